"""Multi-process data parallelism, for real: two CPU processes on 127.0.0.1 (gloo).

Each process has 2 CPU devices, so the job's `data` mesh has 4, as the one-process
run here (conftest gives it 4 fake devices). The two-process job goes through the
CLI (`python -m krd_jax student` with cfg.distributed set), trains a teacher and a
KRDistill student, checkpointing collectively; the result must equal the one-process
run on the same global batches, also after resuming from a collective checkpoint.
"""

import json
import os
import pathlib
import re
import signal
import socket
import subprocess
import sys
import time

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest

from krd_jax import configs
from krd_jax import distributed
from krd_jax import runs
from krd_jax.config import default_config

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# A small job: 276 digits images, batch 64 -> 4 steps per epoch; 2 epochs each.
OVERRIDES = {"teacher.epochs": 2, "student.epochs": 2, "teacher.optim.name": "sgd",
             "student.optim.name": "sgd", "teacher.optim.lr": 0.05,
             "student.optim.lr": 0.05, "eval_every_epochs": 1,
             "checkpoint_every_epochs": 1, "log_every_steps": 2, "progress": False}


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def _config(workdir, cache_dir):
  # The CLI's default recipe, so the in-process run equals the CLI runs it is held to.
  cfg = configs.get(configs.DEFAULT).unlock()
  for key, value in OVERRIDES.items():
    node = cfg
    *parents, leaf = key.split(".")
    for part in parents:
      node = node[part]
    node[leaf] = value
  cfg.workdir = str(workdir)
  cfg.data.cache_dir = str(cache_dir)
  return cfg.lock()


def _start_two_processes(workdir, cache_dir, overrides=None, fault_in_process_1=""):
  """Both processes of the job; `fault_in_process_1` is a KRD_JAX_FAULT directive for
  process 1 alone (krd_jax.testing.faults)."""
  port = _free_port()
  env = {**os.environ, "JAX_PLATFORMS": "cpu", "TF_CPP_MIN_LOG_LEVEL": "3",
         "XLA_FLAGS": "--xla_force_host_platform_device_count=2"}
  env.pop("KRD_JAX_FAULT", None)
  procs = []
  for pid in range(2):
    fault = fault_in_process_1 if pid == 1 else ""
    cmd = [sys.executable, "-m", "krd_jax.testing.run_with_faults" if fault else "krd_jax",
           "student",
           *[f"--config.{k}={v}" for k, v in {**OVERRIDES, **(overrides or {})}.items()],
           f"--config.workdir={workdir}", f"--config.data.cache_dir={cache_dir}",
           f"--config.distributed.coordinator_address=127.0.0.1:{port}",
           "--config.distributed.num_processes=2", f"--config.distributed.process_id={pid}"]
    procs.append(subprocess.Popen(cmd, env={**env, "KRD_JAX_FAULT": fault} if fault else env,
                                  cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                  text=True))
  return procs


def _launch_two_processes(workdir, cache_dir, overrides=None, expect=0,
                          fault_in_process_1=""):
  procs = _start_two_processes(workdir, cache_dir, overrides, fault_in_process_1)
  outputs = []
  for proc in procs:
    try:
      out, err = proc.communicate(timeout=300)
    except subprocess.TimeoutExpired:
      for p in procs:
        p.kill()
      raise
    outputs.append((proc.returncode, out, err))
  for pid, (code, out, err) in enumerate(outputs):
    assert code == expect, f"process {pid} exited {code}:\n{err[-3000:]}"
  return outputs


def _restore_raw(path):
  """A saved pytree's arrays as numpy, whatever topology wrote them."""
  checkpointer = ocp.StandardCheckpointer()
  metadata = checkpointer.metadata(path).item_metadata
  one_device = jax.sharding.SingleDeviceSharding(jax.devices()[0])
  target = jax.tree.map(lambda m: jax.ShapeDtypeStruct(m.shape, m.dtype, sharding=one_device),
                        metadata)
  return jax.device_get(checkpointer.restore(path, target))


def _latest_step_dir(run_dir):
  folder = os.path.join(run_dir, "checkpoints")
  steps = sorted(int(name) for name in os.listdir(folder) if name.isdigit())
  return os.path.join(folder, str(steps[-1]))


def _garble(directory):
  """Flips bytes in the middle of the largest file under `directory`; returns it."""
  files = [os.path.join(d, f) for d, _, fs in os.walk(directory) for f in fs]
  target = pathlib.Path(max(files, key=os.path.getsize))
  data = bytearray(target.read_bytes())
  for i in range(len(data) // 2, len(data) // 2 + 16):
    data[i] ^= 0x5A
  target.write_bytes(bytes(data))
  return target


def _leaves(tree):
  return [np.asarray(x) for x in jax.tree_util.tree_leaves(tree)]


def _assert_trees_close(a, b):
  leaves_a, leaves_b = _leaves(a), _leaves(b)
  assert len(leaves_a) == len(leaves_b) > 0
  for x, y in zip(leaves_a, leaves_b):
    np.testing.assert_allclose(x, y, rtol=1e-5, atol=1e-6)


def test_two_processes_equal_one_process(tmp_path):
  cache = tmp_path / "cache"
  outputs = _launch_two_processes(tmp_path / "two", cache)
  # One report per job: only process 0 prints the summary.
  assert "balanced" in outputs[0][1] and "balanced" not in outputs[1][1]

  single = runs.student(_config(tmp_path / "one", cache))
  two, one = tmp_path / "two", tmp_path / "one"

  final_two = json.loads((two / "students" / "krd" / "final.json").read_text())
  np.testing.assert_allclose(final_two["test"]["per_class"], single["per_class"])

  step_two = _latest_step_dir(str(two / "students" / "krd"))
  step_one = _latest_step_dir(str(one / "students" / "krd"))
  assert os.path.basename(step_two) == os.path.basename(step_one) == "8"
  _assert_trees_close(_restore_raw(os.path.join(step_two, "state")),
                      _restore_raw(os.path.join(step_one, "state")))
  _assert_trees_close(_restore_raw(str(two / "teacher" / "final")),
                      _restore_raw(str(one / "teacher" / "final")))

  # Process 0 alone logged: the same lines as the one-process run, none twice.
  def logged(run):
    return [json.loads(line) for line in (run / "students" / "krd" / "metrics.jsonl")
            .read_text().splitlines()]
  lines_two, lines_one = logged(two), logged(one)
  assert [(m["step"], m["kind"]) for m in lines_two] == \
      [(m["step"], m["kind"]) for m in lines_one]
  for m2, m1 in zip(lines_two, lines_one):
    np.testing.assert_allclose(m2.get("loss", 0.0), m1.get("loss", 0.0), rtol=1e-4)

  # The last checkpoint silently garbled: both processes compute its checksum over
  # arrays no process holds whole, agree it is damaged, set it aside and resume
  # collectively from the epoch-1 checkpoint. A SIGTERM reaching process 1 after
  # training (before final.json) must not leave process 0 waiting in a collective: both
  # finish. (Through the CLI, JAX's own preemption notifier takes the signal; the
  # path where ours does is test_sigterm_outside_fit_waits_for_the_next_agreed_step.)
  garbled = _garble(step_two)
  os.remove(two / "students" / "krd" / "final.json")
  outputs = _launch_two_processes(two, cache, fault_in_process_1="term@student_final:1")
  aside = two / "students" / "krd" / "checkpoints.unreadable"
  assert [p.name for p in aside.iterdir()] and not garbled.exists(), outputs[0][2][-2000:]
  assert all("skipping unreadable checkpoint" in err for _, _, err in outputs)
  assert (two / "students" / "krd" / "final.json").exists()
  resumed = _latest_step_dir(str(two / "students" / "krd"))
  assert os.path.basename(resumed) == "8"
  # It resumed at step 4 (a fresh start would have logged steps 2 and 4 again).
  train_steps = [m["step"] for m in logged(two) if m["kind"] == "train"]
  assert train_steps == [2, 4, 6, 8, 6, 8]
  _assert_trees_close(_restore_raw(os.path.join(resumed, "state")),
                      _restore_raw(os.path.join(step_one, "state")))


def test_sigterm_to_one_process_stops_both_at_one_step(tmp_path):
  """A preemption notice reaching one process: both checkpoint the same step and exit
  143 (neither waits for the other in a collective), and the job resumes from it."""
  # Long enough that the agreed stop (JAX settles it in the background, ~30 steps
  # here) comes well before the end.
  longer = {"student.epochs": 120, "teacher.epochs": 1, "checkpoint_every_epochs": 120,
            "eval_every_epochs": 120}
  log = tmp_path / "students" / "krd" / "metrics.jsonl"
  procs = _start_two_processes(tmp_path, tmp_path / "cache", longer)
  deadline = time.time() + 240
  while not (log.exists() and len(log.read_text().splitlines()) >= 3):
    assert time.time() < deadline and all(p.poll() is None for p in procs)
    time.sleep(0.2)
  procs[1].send_signal(signal.SIGTERM)
  errors = [p.communicate(timeout=120)[1] for p in procs]
  assert [p.returncode for p in procs] == [143, 143], errors
  stopped = [re.search(r"stopped by SIGTERM at step (\d+)/480", e).group(1) for e in errors]
  assert stopped[0] == stopped[1] and 0 < int(stopped[0]) < 480
  assert os.path.basename(_latest_step_dir(str(tmp_path / "students" / "krd"))) == stopped[0]
  _launch_two_processes(tmp_path, tmp_path / "cache", longer)
  assert os.path.basename(_latest_step_dir(str(tmp_path / "students" / "krd"))) == "480"


def test_sigterm_outside_fit_waits_for_the_next_agreed_step(monkeypatch):
  """Our handler, outside a fit loop: one process stops at once (nothing to save);
  one of several keeps the request for the next step every process checks together
  (the first step of the next fit), so none stops alone in front of a collective."""
  from jax.experimental import multihost_utils
  from krd_jax.train import preemption
  previous = signal.getsignal(signal.SIGTERM)
  try:
    monkeypatch.setattr(distributed, "is_multiprocess", lambda: False)
    preemption.install_preemption_handler()
    with pytest.raises(preemption.Preempted, match="outside training"):
      os.kill(os.getpid(), signal.SIGTERM)
      time.sleep(1)  # the handler runs between bytecodes

    monkeypatch.setattr(distributed, "is_multiprocess", lambda: True)
    gathered = []
    monkeypatch.setattr(multihost_utils, "reached_preemption_sync_point", lambda step: False)
    monkeypatch.setattr(multihost_utils, "process_allgather",
                        lambda x: gathered.append(int(x)) or np.asarray([x, 0]))
    preemption.install_preemption_handler()
    os.kill(os.getpid(), signal.SIGTERM)
    time.sleep(0.1)  # nothing raised: the request is kept
    assert preemption.requested()
    # Between log steps nobody gathers, except at the first step of a fit.
    assert preemption.agreed(7, every=50) is False and gathered == []
    assert preemption.agreed(7, every=50, force_sync=True) is True and gathered == [1]
  finally:
    signal.signal(signal.SIGTERM, previous)
    preemption._State.requested = False  # pylint: disable=protected-access  (later fits here)


@pytest.mark.parametrize("environ, expected", [
    ({}, False),
    ({"JAX_COORDINATOR_ADDRESS": "10.0.0.1:1234"}, True),
    ({"SLURM_JOB_ID": "7", "SLURM_PROCID": "0", "SLURM_NTASKS": "8"}, True),
    ({"SLURM_JOB_ID": "7", "SLURM_PROCID": "0", "SLURM_NTASKS": "1"}, False),
    ({"TPU_WORKER_HOSTNAMES": "t-0,t-1,t-2,t-3"}, True),
    ({"TPU_WORKER_HOSTNAMES": "localhost"}, False),
])
def test_environment_detection(environ, expected):
  assert distributed.environment_is_multiprocess(environ) is expected
  cfg = default_config()
  assert distributed.should_initialize(cfg.distributed, environ) is expected
  never = default_config().unlock()
  never.distributed.initialize = "no"
  assert distributed.should_initialize(never.distributed, environ) is False


@pytest.mark.parametrize("key, value", [
    ("distributed.initialize", "maybe"),
    ("distributed.coordinator_address", "10.0.0.1"),
    ("distributed.coordinator_address", "10.0.0.1:99999"),
    ("distributed.num_processes", -1),
    ("distributed.process_id", -2),
    ("distributed.cpu_collectives", "nccl"),
])
def test_bad_distributed_config_is_refused(tmp_path, key, value):
  from krd_jax import validate
  cfg = _config(tmp_path, tmp_path / "cache").unlock()
  section, leaf = key.split(".")
  cfg[section][leaf] = value
  with pytest.raises(validate.InputError, match=key.replace(".", r"\.")):
    validate.check_distributed(cfg)
  assert not os.path.exists(tmp_path / "students")
