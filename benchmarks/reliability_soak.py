"""Reliability soak: a 2,000-step digits run interrupted 20 times equals the uninterrupted one.

  python benchmarks/reliability_soak.py                 # about 5 minutes on 2 CPU cores
  python benchmarks/reliability_soak.py --restarts 5 --steps 400   # a quick look
  python benchmarks/reliability_soak.py --memory-probe --steps 8000  # RSS with/without saves

Trains the digits teacher (MLP 256, random crops on) for `--steps` steps with a
checkpoint every 50 steps, keeping the latest 2 plus the best. First uninterrupted,
sampling its host memory (RSS); then the same command is started again and again and
interrupted `--restarts` times, cycling through: SIGKILL from outside at a random
moment, SIGKILL at a random step, SIGKILL inside a checkpoint write (arrays written,
not committed), SIGKILL just before the commit rename, SIGKILL right after a save, and
SIGTERM from outside (preemption: checkpoint, exit 143). After each interruption it
measures the run folder and counts checkpoint folders (disk bounded by keep-K). Then
one last start finishes the run, and every saved array and logged metric is compared
with the uninterrupted run, bit for bit.

Prints a JSON summary (and writes it to --out) and exits non-zero if anything differs.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time

import numpy as np
import psutil

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from krd_jax import runs  # noqa: E402  pylint: disable=g-import-not-at-top
from krd_jax.config import default_config  # noqa: E402  pylint: disable=g-import-not-at-top
from krd_jax.train import checkpoints as ckpt_lib  # noqa: E402  pylint: disable=g-import-not-at-top

STEPS_PER_EPOCH = 4  # 276 digits, batch 64.
MODES = ("external_kill", "kill_step", "kill_save_write", "kill_save_commit", "kill_saved",
         "sigterm")


def command(workdir: pathlib.Path, steps: int, every: int, keep: int) -> list[str]:
  return [sys.executable, "-m", "krd_jax.testing.run_with_faults", "teacher",
          "--config=digits_lt",
          f"--config.workdir={workdir}", "--config.progress=False",
          f"--config.teacher.epochs={steps // STEPS_PER_EPOCH}",
          f"--config.checkpoint_every_steps={every}", f"--config.log_every_steps={every}",
          f"--config.eval_every_epochs={steps // STEPS_PER_EPOCH}",
          f"--config.keep_checkpoints={keep}", "--config.data.crop_pad=1"]


def environment(cache: pathlib.Path, jax_cache: pathlib.Path, fault: str = "") -> dict:
  env = dict(os.environ, JAX_PLATFORMS="cpu", XLA_FLAGS="", KRD_JAX_CACHE=str(cache),
             JAX_COMPILATION_CACHE_DIR=str(jax_cache),
             JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0",
             JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES="0", PYTHONPATH=str(REPO))
  env.pop("KRD_JAX_FAULT", None)
  if fault:
    env["KRD_JAX_FAULT"] = fault
  return env


def train_lines(log: pathlib.Path) -> int:
  if not log.exists():
    return 0
  return sum('"kind": "train"' in line for line in log.read_text().splitlines())


class Watched:
  """A child process whose RSS is sampled every 50 ms."""

  def __init__(self, cmd: list[str], env: dict):
    self.proc = subprocess.Popen(cmd, env=env, cwd=REPO, stdout=subprocess.DEVNULL,
                                 stderr=subprocess.PIPE, text=True)
    self.ps = psutil.Process(self.proc.pid)
    self.samples: list[tuple[float, int]] = []  # (time, rss bytes)

  def sample(self) -> None:
    try:
      rss = self.ps.memory_info().rss
    except psutil.Error:
      return
    if rss:  # An exited (zombie) process reads 0.
      self.samples.append((time.time(), rss))

  def wait(self, until=None, timeout: float = 600) -> int | None:
    """Samples until the process exits (or `until()` is true); returns its code."""
    deadline = time.time() + timeout
    while time.time() < deadline:
      if self.proc.poll() is not None:
        return self.proc.returncode
      self.sample()
      if until is not None and until():
        return None
      time.sleep(0.05)
    raise TimeoutError(" ".join(self.proc.args))

  def finish(self) -> tuple[int, str]:
    _, err = self.proc.communicate(timeout=600)
    return self.proc.returncode, err

  @property
  def peak_rss(self) -> int:
    return max((rss for _, rss in self.samples), default=0)


def folder_bytes(path: pathlib.Path) -> int:
  return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def checkpoint_folders(path: pathlib.Path) -> tuple[int, int]:
  """(committed step folders, temporary folders) under a checkpoints directory."""
  if not path.exists():
    return 0, 0
  names = [p.name for p in path.iterdir()]
  return sum(n.isdigit() for n in names), sum("orbax-checkpoint-tmp" in n for n in names)


def interrupt(mode: str, rng: random.Random, cmd, env_for, log) -> dict:
  """Starts the run, interrupts it by `mode`; returns what happened."""
  faults = {"kill_step": f"kill@step:{rng.randint(20, 150)}",
            "kill_save_write": f"kill@save_write:{rng.randint(1, 3)}",
            "kill_save_commit": f"kill@save_commit:{rng.randint(1, 3)}",
            "kill_saved": f"kill@saved:{rng.randint(1, 3)}"}
  before = train_lines(log)
  # Slow steps for the outside signals, so they land inside training at a random step.
  fault = faults.get(mode, "slow@step:3")
  child = Watched(cmd, env_for(fault))
  started = time.time()
  if mode in ("external_kill", "sigterm"):
    rc = child.wait(until=lambda: train_lines(log) > before)
    if rc is None:
      delay = time.time() + rng.uniform(0.0, 1.0)
      child.wait(until=lambda: time.time() >= delay)
      child.proc.send_signal(signal.SIGKILL if mode == "external_kill" else signal.SIGTERM)
  signalled = time.time()
  child.wait()
  rc, err = child.finish()
  return {"mode": mode, "fault": fault if mode in faults else None, "rc": rc,
          "seconds": round(time.time() - started, 1),
          "exit_after_signal_s": round(time.time() - signalled, 2)
          if mode in ("external_kill", "sigterm") else None,
          "peak_rss_mb": round(child.peak_rss / 2**20, 1),
          "stderr_tail": err.strip().splitlines()[-1][:300] if err.strip() else ""}


def log_entries(path: pathlib.Path) -> dict:
  """{(step, kind): json text}; raises if a step re-done after a restore differs."""
  entries = {}
  for line in path.read_text().splitlines():
    try:
      record = json.loads(line)
    except ValueError:
      continue  # A line a SIGKILL cut short.
    text = json.dumps(record, sort_keys=True)
    if entries.setdefault((record["step"], record["kind"]), text) != text:
      raise AssertionError(f"step {record['step']} {record['kind']} differs after resume")
  return entries


def leaves_equal(a, b) -> bool:
  import jax  # pylint: disable=g-import-not-at-top
  la = [np.asarray(x) for x in jax.tree_util.tree_leaves(jax.device_get(a))]
  lb = [np.asarray(x) for x in jax.tree_util.tree_leaves(jax.device_get(b))]
  return len(la) == len(lb) and all(
      x.dtype == y.dtype and x.shape == y.shape and x.tobytes() == y.tobytes()
      for x, y in zip(la, lb))


def compare(ref: pathlib.Path, run: pathlib.Path, steps: int) -> dict:
  import orbax.checkpoint as ocp  # pylint: disable=g-import-not-at-top
  out = {"teacher_json_equal": (ref / "teacher/teacher.json").read_text()
         == (run / "teacher/teacher.json").read_text()}
  a = ckpt_lib.RunCheckpoints(str(ref / "teacher/checkpoints"))
  b = ckpt_lib.RunCheckpoints(str(run / "teacher/checkpoints"))
  out["final_step"] = [a.latest_step, b.latest_step]
  restore_args = ocp.args.Composite(state=ocp.args.StandardRestore(),
                                    meta=ocp.args.JsonRestore())
  out["final_state_bitwise_equal"] = a.latest_step == b.latest_step == steps and leaves_equal(
      a.manager.restore(steps, args=restore_args)["state"],
      b.manager.restore(steps, args=restore_args)["state"])
  checkpointer = ocp.StandardCheckpointer()
  out["final_variables_bitwise_equal"] = leaves_equal(
      checkpointer.restore(ref / "teacher/final"), checkpointer.restore(run / "teacher/final"))
  ref_log = log_entries(ref / "teacher/metrics.jsonl")
  run_log = log_entries(run / "teacher/metrics.jsonl")
  out["logged_metrics_equal"] = ref_log == run_log
  out["logged_entries"] = len(run_log)
  return out


def memory_probe(base: pathlib.Path, cache: pathlib.Path, jax_cache: pathlib.Path,
                 steps: int, every: int) -> dict:
  """RSS by step of two uninterrupted runs: no checkpoints, and one every `every` steps."""
  out = {}
  for name, extra in (("no_checkpoints", ["--config.checkpoint_every_steps=0",
                                          f"--config.checkpoint_every_epochs={10**6}"]),
                      (f"checkpoint_every_{every}", [])):
    workdir = base / f"probe_{name}"
    shutil.rmtree(workdir, ignore_errors=True)
    cmd = command(workdir, steps, every, keep=2) + extra
    child = Watched(cmd, environment(cache, jax_cache))
    log, series = workdir / "teacher/metrics.jsonl", {}
    while child.proc.poll() is None:
      child.sample()
      if log.exists() and child.samples:
        last = [json.loads(l) for l in log.read_text().splitlines()[-1:] if l.endswith("}")]
        if last and last[0]["step"] not in series:
          series[last[0]["step"]] = round(child.samples[-1][1] / 2**20, 1)
      time.sleep(0.05)
    rc, err = child.finish()
    if rc != 0:
      raise SystemExit(f"probe run failed ({rc}): {err[-2000:]}")
    keys = sorted(series)
    out[name] = {k: series[k] for i, k in enumerate(keys)
                 if i % max(1, len(keys) // 10) == 0 or i == len(keys) - 1}
  return out


def main() -> int:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--steps", type=int, default=2000)
  parser.add_argument("--every", type=int, default=50, help="checkpoint every N steps")
  parser.add_argument("--keep", type=int, default=2)
  parser.add_argument("--restarts", type=int, default=20)
  parser.add_argument("--seed", type=int, default=0)
  parser.add_argument("--workdir", default="")
  parser.add_argument("--out", default="")
  parser.add_argument("--memory-probe", action="store_true",
                      help="only compare RSS by step with and without checkpoints")
  args = parser.parse_args()
  base = pathlib.Path(args.workdir or tempfile.mkdtemp(prefix="krd_soak_"))
  shutil.rmtree(base / "ref", ignore_errors=True)
  shutil.rmtree(base / "run", ignore_errors=True)
  cache, jax_cache = base / "data_cache", base / "jax_cache"
  cfg = default_config().unlock()
  cfg.data.cache_dir = str(cache)
  runs.load_data(cfg.lock())  # Decoded once here, so no run below imports TensorFlow.
  if args.memory_probe:
    print(json.dumps(memory_probe(base, cache, jax_cache, args.steps, args.every), indent=1))
    return 0
  rng = random.Random(args.seed)
  started = time.time()

  ref_child = Watched(command(base / "ref", args.steps, args.every, args.keep),
                      environment(cache, jax_cache))
  ref_log = base / "ref/teacher/metrics.jsonl"
  first_log_time, rss_by_step, logged = None, {}, 0
  while ref_child.proc.poll() is None:
    ref_child.sample()
    now_logged = train_lines(ref_log)
    if now_logged > logged and ref_child.samples:
      logged = now_logged
      rss_by_step[logged * args.every] = round(ref_child.samples[-1][1] / 2**20, 1)
      first_log_time = first_log_time or time.time()
    time.sleep(0.05)
  rc, err = ref_child.finish()
  if rc != 0:
    raise SystemExit(f"uninterrupted run failed ({rc}): {err[-2000:]}")
  after_warmup = [rss for t, rss in ref_child.samples if first_log_time and t >= first_log_time]
  tail = after_warmup[len(after_warmup) * 9 // 10:]
  memory = {"uninterrupted_rss_mb_at_first_log": round(after_warmup[0] / 2**20, 1),
            "uninterrupted_peak_rss_mb_first_10pct": round(
                max(after_warmup[:max(1, len(after_warmup) // 10)]) / 2**20, 1),
            "uninterrupted_peak_rss_mb_last_10pct": round(max(tail) / 2**20, 1),
            "uninterrupted_rss_mb_at_end": round(after_warmup[-1] / 2**20, 1),
            "uninterrupted_peak_rss_mb": round(ref_child.peak_rss / 2**20, 1),
            "uninterrupted_rss_mb_by_step": {
                k: v for i, (k, v) in enumerate(sorted(rss_by_step.items()))
                if i % max(1, len(rss_by_step) // 10) == 0 or i == len(rss_by_step) - 1},
            "uninterrupted_seconds": round(ref_child.samples[-1][0] - ref_child.samples[0][0], 1)}
  ckpt_bytes = max(folder_bytes(p) for p in (base / "ref/teacher/checkpoints").iterdir()
                   if p.name.isdigit())

  run = base / "run"
  cmd = command(run, args.steps, args.every, args.keep)
  log = run / "teacher/metrics.jsonl"
  events, disk = [], []
  for i in range(args.restarts):
    if (run / "teacher/teacher.json").exists():
      raise SystemExit(f"the run finished after {i} interruptions; raise --steps")
    event = interrupt(MODES[i % len(MODES)], rng, cmd,
                      lambda fault: environment(cache, jax_cache, fault), log)
    committed, temporary = checkpoint_folders(run / "teacher/checkpoints")
    event.update(committed=committed, temporary=temporary,
                 latest=ckpt_lib.RunCheckpoints(str(run / "teacher/checkpoints")).latest_step,
                 run_dir_kb=round(folder_bytes(run) / 1024, 1))
    disk.append(event["run_dir_kb"])
    events.append(event)
    print(json.dumps(event), flush=True)
  final = Watched(cmd, environment(cache, jax_cache))
  final.wait()
  rc, err = final.finish()
  if rc != 0:
    raise SystemExit(f"the final restart failed ({rc}): {err[-2000:]}")

  expected_rc = {"sigterm": 143}
  result = {
      "command": " ".join(cmd[1:]), "steps": args.steps, "checkpoint_every": args.every,
      "keep": args.keep, "restarts": len(events),
      "by_mode": {m: sum(e["mode"] == m for e in events) for m in MODES},
      "unexpected_exit_codes": [e for e in events
                                if e["rc"] != expected_rc.get(e["mode"], -signal.SIGKILL)],
      "max_committed_checkpoints": max(e["committed"] for e in events),
      "max_temporary_folders": max(e["temporary"] for e in events),
      "checkpoint_kb": round(ckpt_bytes / 1024, 1),
      "max_run_dir_kb": max(disk), "final_run_dir_kb": round(folder_bytes(run) / 1024, 1),
      "restart_peak_rss_mb": [min(e["peak_rss_mb"] for e in events if e["peak_rss_mb"]),
                              max(e["peak_rss_mb"] for e in events)],
      "sigterm_exit_after_signal_s": [e["exit_after_signal_s"] for e in events
                                      if e["mode"] == "sigterm"],
      **memory, **compare(base / "ref", run, args.steps),
      "wall_seconds": round(time.time() - started, 1), "workdir": str(base),
  }
  # Bounded disk: keep-K latest plus one best, plus at most one interrupted save.
  result["disk_bounded"] = (result["max_committed_checkpoints"] <= args.keep + 1
                            and result["max_temporary_folders"] <= 1)
  ok = (result["final_state_bitwise_equal"] and result["final_variables_bitwise_equal"]
        and result["logged_metrics_equal"] and result["teacher_json_equal"]
        and result["disk_bounded"] and not result["unexpected_exit_codes"])
  result["ok"] = bool(ok)
  text = json.dumps(result, indent=1)
  print(text)
  if args.out:
    pathlib.Path(args.out).write_text(text + "\n")
  return 0 if ok else 1


if __name__ == "__main__":
  sys.exit(main())
