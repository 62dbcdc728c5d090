"""Reliability: runs survive interruption and corruption, bad input is refused cleanly.

Real processes, real files, small configs: a run survives kills, preemption and corrupt or full-disk writes. The kill test chains one run
through six SIGKILLs (mid-epoch, inside a checkpoint write twice, between the
teacher's final save and its metadata, before a student's final.json), one SIGTERM,
a silently garbled checkpoint, a garbled teacher and two broken data caches, and
compares every saved array and logged metric with an uninterrupted run. The rest runs
in-process through `krd_jax.__main__.cli` to stay fast. The 2,000-step soak with 20
restarts is benchmarks/reliability_soak.py.
"""

import json
import os
import pathlib
import shutil
import signal
import subprocess
import sys
import time

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest
from PIL import Image

from krd_jax import __main__ as cli_lib
from krd_jax import runs
from krd_jax.config import default_config
from krd_jax import data as kd_data
from krd_jax.data import image_folder
from krd_jax.data import loader as loader_lib
from krd_jax.train import checkpoints as ckpt_lib
from krd_jax.testing import faults

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIG = "digits_lt:local"
# 276 digits / batch 64 = 4 steps an epoch; 8 epochs = 32 steps; checkpoints at
# 8, 16, 24, 32. Random crops on, so resume must also reproduce the augmentation keys;
# a log line per step, so resume must reproduce every step's loss.
CHAIN_ARGS = ("--config.progress=False", "--config.teacher.epochs=8",
              "--config.student.epochs=8", "--config.checkpoint_every_epochs=2",
              "--config.eval_every_epochs=2", "--config.log_every_steps=1",
              "--config.data.crop_pad=1", "--config.student.method=krd")


@pytest.fixture(scope="module")
def data_cache(tmp_path_factory):
  """digits_lt decoded once (the only TensorFlow import); every run here hits it."""
  from krd_jax import configs
  path = tmp_path_factory.mktemp("krd_cache")
  cfg = configs.get(CONFIG).unlock()  # the runs' own data (digits_lt keeps a val split)
  cfg.data.cache_dir = str(path)
  runs.load_data(cfg.lock())
  return path


@pytest.fixture(scope="module")
def jax_cache(tmp_path_factory):
  """A persistent compilation cache shared by the subprocesses: restarts skip XLA."""
  return tmp_path_factory.mktemp("jax_cache")


@pytest.fixture
def in_process(data_cache, monkeypatch):
  """Runs the CLI in this process; returns run(command, workdir, *args) -> (rc, stderr)."""
  monkeypatch.setenv("KRD_JAX_CACHE", str(data_cache))
  monkeypatch.delenv(faults.ENV, raising=False)

  faults.install()

  def run(capsys, command, workdir, *args, config=CONFIG):
    faults.reset()
    rc = cli_lib.cli(["krd_jax", command, f"--config={config}",
                      f"--config.workdir={workdir}", "--config.progress=False", *args])
    return rc, capsys.readouterr().err

  return run


def _env(data_cache, jax_cache, fault=""):
  env = dict(os.environ, JAX_PLATFORMS="cpu", XLA_FLAGS="", KRD_JAX_CACHE=str(data_cache),
             JAX_COMPILATION_CACHE_DIR=str(jax_cache),
             JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0",
             JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES="0")
  env.pop(faults.ENV, None)
  if fault:
    env[faults.ENV] = fault
  return env


def _student_cmd(workdir):
  return [sys.executable, "-m", "krd_jax.testing.run_with_faults", "student",
          f"--config={CONFIG}",
          f"--config.workdir={workdir}", *CHAIN_ARGS]


def _run(cmd, env, expect_rc):
  result = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300, cwd=REPO)
  assert result.returncode == expect_rc, (result.returncode, result.stderr[-3000:])
  return result


def _one_error_line(stderr, prefix="krd_jax: error: "):
  lines = [line for line in stderr.splitlines() if line.strip()]
  assert len(lines) == 1, stderr
  assert lines[0].startswith(prefix), stderr
  return lines[0]


def _steps(ckpt_dir):
  path = pathlib.Path(ckpt_dir)
  return sorted(int(p.name) for p in path.iterdir() if p.name.isdigit()) if path.exists() else []


def _tmp_dirs(ckpt_dir):
  return [p.name for p in pathlib.Path(ckpt_dir).iterdir() if "orbax-checkpoint-tmp" in p.name]


def _leaves(tree):
  return [np.asarray(x) for x in jax.tree_util.tree_leaves(jax.device_get(tree))]


def _assert_bitwise(a, b):
  a, b = _leaves(a), _leaves(b)
  assert len(a) == len(b) and a
  for x, y in zip(a, b):
    assert x.dtype == y.dtype and x.shape == y.shape and x.tobytes() == y.tobytes()


def _log_entries(path):
  """{(step, kind): json text}; every repeat of a step (re-done after a restore) must
  have logged exactly the same values."""
  entries = {}
  for line in pathlib.Path(path).read_text().splitlines():
    try:
      record = json.loads(line)
    except ValueError:
      continue  # A line a SIGKILL cut short.
    key = (record["step"], record["kind"])
    text = json.dumps(record, sort_keys=True)
    assert entries.setdefault(key, text) == text, f"step {key} differs after resume"
  return entries


def _garble(directory):
  """Flips bytes in the middle of the largest file under `directory`; returns it."""
  target = max((p for p in pathlib.Path(directory).rglob("*") if p.is_file()),
               key=lambda p: p.stat().st_size)
  data = bytearray(target.read_bytes())
  for i in range(len(data) // 2, len(data) // 2 + 16):
    data[i] ^= 0x5A
  target.write_bytes(bytes(data))
  return target


def _dataset_cache_file(cache_dir):
  files = sorted((pathlib.Path(cache_dir) / "datasets").glob("digits_lt-*.npz"))
  assert len(files) == 1, files
  return files[0]


def _wait_for_new_train_lines(path, skip, count, proc, timeout=120):
  deadline = time.time() + timeout
  while time.time() < deadline and proc.poll() is None:
    if path.exists():
      lines = path.read_text().splitlines()[skip:]
      if sum('"kind": "train"' in line for line in lines) >= count:
        return
    time.sleep(0.05)
  raise AssertionError(f"no {count} new train lines in {path} (rc={proc.poll()})")


# ------------------------------------------------------------------ interruption


def test_kills_preemption_and_corruption_resume_bitwise(tmp_path, data_cache, jax_cache):
  cache = tmp_path / "cache"  # This test breaks its cache: a private copy.
  shutil.copytree(data_cache, cache)
  ref, run = tmp_path / "ref", tmp_path / "run"
  # The uninterrupted run, alongside the first attempts (mostly process start-up).
  reference = subprocess.Popen(_student_cmd(ref), env=_env(cache, jax_cache), cwd=REPO,
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
  cmd = _student_cmd(run)
  teacher_ckpts = run / "teacher" / "checkpoints"
  student_ckpts = run / "students" / "krd" / "checkpoints"

  def attempt(fault):
    return _run(cmd, _env(cache, jax_cache, fault), -signal.SIGKILL)

  # 1. Teacher mid-epoch, before any checkpoint: the restart starts over.
  attempt("kill@step:7")
  assert _steps(teacher_ckpts) == []
  # 2. Inside the write of the second checkpoint: the arrays are in Orbax's temporary
  #    folder, never committed, so the restart must not take it for step 16.
  attempt("kill@save_write:2")
  assert _steps(teacher_ckpts) == [8] and _tmp_dirs(teacher_ckpts)
  # 3. SIGTERM (preemption) from outside while training: a checkpoint of the current
  #    step, a one-line message and exit 143 within seconds.
  log = run / "teacher" / "metrics.jsonl"
  skip = len(log.read_text().splitlines())
  proc = subprocess.Popen(cmd, env=_env(cache, jax_cache, "slow@step:150"), cwd=REPO,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
  _wait_for_new_train_lines(log, skip, 3, proc)
  proc.send_signal(signal.SIGTERM)
  sent = time.time()
  _, stderr = proc.communicate(timeout=60)
  assert proc.returncode == cli_lib.EXIT_PREEMPTED, stderr[-3000:]
  assert time.time() - sent < 30
  preempted = _steps(teacher_ckpts)[-1]
  assert 8 < preempted < 32, _steps(teacher_ckpts)
  line = _one_error_line(stderr, "krd_jax: preempted: ")
  assert f"SIGTERM at step {preempted}/32" in line and f"checkpoints/{preempted}" in line
  assert not _tmp_dirs(teacher_ckpts)  # The interrupted save's folder was cleaned up.
  # 4. Between the teacher's final variables and teacher.json.
  attempt("kill@teacher_final:1")
  assert (run / "teacher" / "final").exists()
  assert not (run / "teacher" / "teacher.json").exists()
  # The reference run must have read the data cache before it is broken below.
  assert reference.wait(timeout=300) == 0, reference.stderr.read()[-3000:]
  # 5. A truncated data cache; then killed just before the rename that commits the
  #    student's first checkpoint (commit 1 is the teacher's final save).
  cache_file = _dataset_cache_file(cache)
  cache_file.write_bytes(cache_file.read_bytes()[:1000])
  result = attempt("kill@save_commit:2")
  assert "does not match its manifest" in result.stderr
  assert (run / "teacher" / "teacher.json").exists()
  assert _steps(student_ckpts) == [] and _tmp_dirs(student_ckpts)
  # 6. A stale data cache (built for another key); killed mid-epoch after two
  #    student checkpoints.
  manifest = pathlib.Path(str(_dataset_cache_file(cache)) + ".json")
  manifest.write_text(json.dumps({**json.loads(manifest.read_text()), "key": "0" * 64}))
  result = attempt("kill@step:19")
  assert "built for another key" in result.stderr
  assert _steps(student_ckpts) == [8, 16]
  # 7. Silent corruption: flipped bytes in the latest student checkpoint and in the
  #    teacher's final variables, which Orbax alone would restore as wrong numbers.
  #    Killed before final.json.
  _garble(student_ckpts / "16")
  _garble(run / "teacher" / "final")
  result = attempt("kill@student_final:1")
  assert f"skipping unreadable checkpoint {student_ckpts}/16" in result.stderr
  assert "rebuilding it from the teacher run's checkpoints" in result.stderr
  assert list((student_ckpts.parent / "checkpoints.unreadable").iterdir())
  assert not (run / "students" / "krd" / "final.json").exists()
  # 8. The same command once more: it finishes.
  _run(cmd, _env(cache, jax_cache), 0)

  for name in ("teacher/teacher.json", "students/krd/final.json", "students/krd/config.json",
               "teacher/config.json"):
    assert (ref / name).read_text() == (run / name).read_text(), name
  for role in ("teacher", "students/krd"):
    assert _log_entries(ref / role / "metrics.jsonl") == _log_entries(run / role / "metrics.jsonl")
  checkpointer = ocp.StandardCheckpointer()
  _assert_bitwise(checkpointer.restore(ref / "teacher" / "final"),
                  checkpointer.restore(run / "teacher" / "final"))
  for role in ("teacher", "students/krd"):
    a = ckpt_lib.RunCheckpoints(str(ref / role / "checkpoints"))
    b = ckpt_lib.RunCheckpoints(str(run / role / "checkpoints"))
    assert a.latest_step == b.latest_step == 32
    _assert_bitwise(a.manager.restore(32)["state"], b.manager.restore(32)["state"])


def test_resumed_loader_sees_the_uninterrupted_order():
  mesh = jax.sharding.Mesh(np.asarray(jax.devices()[:1]), ("data",))
  images = np.arange(50, dtype=np.uint8).reshape(50, 1, 1, 1)  # Each image its own id.
  labels = np.arange(50) % 5
  ds = kd_data.LongTailDataset(
      name="ids", num_classes=5, class_names=list("abcde"), train_counts=np.bincount(labels),
      image_shape=(1, 1, 1), mean=np.zeros(1), std=np.ones(1), train_images=images,
      train_labels=labels, test_images=images, test_labels=labels)
  loader = loader_lib.DatasetLoader(ds, 8, mesh, seed=3)

  def ids(epoch, start=0):
    return [jax.device_get(b["image"]).ravel().tolist()
            for b in loader.epoch(epoch, start_step=start)]

  for epoch in (0, 4):
    full = ids(epoch)
    for start in range(loader.steps_per_epoch + 1):
      assert ids(epoch, start) == full[start:]
  # Another epoch is another order: the position is (seed, epoch, step), nothing else.
  assert ids(1) != ids(4) and ids(4) == full


# ------------------------------------------------------------------ corruption


@pytest.mark.parametrize("damage", ["truncate", "garble", "delete_metadata"])
def test_restore_skips_a_damaged_latest_checkpoint(tmp_path, damage, caplog):
  from krd_jax.train import optim
  from krd_jax.train.state import create_state
  params = {"model": {"w": np.arange(6, dtype=np.float32).reshape(2, 3)}}
  tx = optim.make_optimizer(default_config().teacher.optim, 1, 1)
  state = create_state(params, {}, tx)
  manager = ckpt_lib.RunCheckpoints(str(tmp_path / "checkpoints"), keep=3)
  for step in (1, 2):
    manager.save(state.replace(step=np.int32(step),
                               params=jax.tree.map(lambda x: x + step, state.params)),
                 {"epoch": step})
  latest = tmp_path / "checkpoints" / "2"
  if damage == "truncate":
    target = max((p for p in latest.rglob("*") if p.is_file()), key=lambda p: p.stat().st_size)
    target.write_bytes(target.read_bytes()[: target.stat().st_size // 2])
  elif damage == "garble":
    _garble(latest)
  else:
    (latest / "state" / "_METADATA").unlink()
  restored, meta = manager.restore_latest(state)
  assert meta == {"epoch": 1} and int(restored.step) == 1
  np.testing.assert_array_equal(restored.params["model"]["w"], params["model"]["w"] + 1)
  assert f"skipping unreadable checkpoint {latest}" in caplog.text
  assert manager.latest_step == 1 and not latest.exists()
  assert list((tmp_path / "checkpoints.unreadable").iterdir())
  # The resumed run saves step 2 again where the damaged one was.
  manager.save(state.replace(step=np.int32(2)), {"epoch": 2})
  assert manager.latest_step == 2


def test_full_disk_while_saving_keeps_the_previous_checkpoint(tmp_path, in_process, capsys,
                                                              monkeypatch):
  args = ("--config.teacher.epochs=4", "--config.checkpoint_every_epochs=1")
  monkeypatch.setenv(faults.ENV, "enospc@save_write:2")
  rc, err = in_process(capsys, "teacher", tmp_path, *args)
  assert rc == cli_lib.EXIT_WRITE_FAILED
  ckpts = tmp_path / "teacher" / "checkpoints"
  line = _one_error_line(err)
  assert f"could not write checkpoint {ckpts}/8 (disk full" in line
  assert f"the previous checkpoint {ckpts}/4 is intact" in line
  assert _steps(ckpts) == [4] and not _tmp_dirs(ckpts)
  _assert_intact(ckpts, 4)


def _assert_intact(ckpts, step):
  """Checkpoint `step` restores and matches the checksum saved with it."""
  raw = ckpt_lib.RunCheckpoints(str(ckpts)).manager.restore(step)
  assert raw["meta"][ckpt_lib.CHECKSUM_KEY] == ckpt_lib.tree_sha256(raw["state"])
  return raw


@pytest.fixture
def small_filesystem(tmp_path):
  """A 700 KB tmpfs (two digits checkpoints fit, a third does not); root only."""
  mount = tmp_path / "small"
  mount.mkdir()
  if os.geteuid() != 0 or shutil.which("mount") is None:
    pytest.skip("needs root to mount a small tmpfs")
  result = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=700k", "tmpfs", str(mount)],
                          capture_output=True)
  if result.returncode:
    pytest.skip(f"cannot mount a tmpfs here: {result.stderr.decode()[:200]}")
  try:
    yield mount
  finally:
    subprocess.run(["umount", str(mount)], check=False)


def test_really_full_disk_stops_cleanly(small_filesystem, in_process, capsys):
  rc, err = in_process(capsys, "teacher", small_filesystem / "w", "--config.teacher.epochs=12",
                       "--config.checkpoint_every_epochs=1")
  assert rc == cli_lib.EXIT_WRITE_FAILED
  line = _one_error_line(err)
  assert "disk full" in line and "run the same command again to resume" in line
  ckpts = small_filesystem / "w" / "teacher" / "checkpoints"
  assert _steps(ckpts) and not _tmp_dirs(ckpts)
  _assert_intact(ckpts, _steps(ckpts)[-1])


# ------------------------------------------------------------------ numerics


def test_nan_loss_stops_with_step_and_last_good_checkpoint(tmp_path, in_process, capsys,
                                                           monkeypatch):
  monkeypatch.setenv(faults.ENV, "nan@step:7")
  rc, err = in_process(capsys, "teacher", tmp_path, "--config.teacher.epochs=4",
                       "--config.checkpoint_every_epochs=1", "--config.log_every_steps=1")
  assert rc == cli_lib.EXIT_NONFINITE
  ckpts = tmp_path / "teacher" / "checkpoints"
  line = _one_error_line(err)
  assert "NaN/Inf at or before step 7" in line and f"{ckpts}/4" in line
  assert _steps(ckpts) == [4] and not (tmp_path / "teacher" / "teacher.json").exists()
  raw = _assert_intact(ckpts, 4)
  assert all(np.isfinite(x).all() for x in _leaves(raw["state"]["params"]))


def test_diverging_learning_rate_stops_before_any_checkpoint(tmp_path, in_process, capsys):
  rc, err = in_process(capsys, "teacher", tmp_path, "--config.teacher.epochs=2",
                       "--config.teacher.optim.name=sgd", "--config.teacher.optim.lr=1e30",
                       "--config.log_every_steps=1")
  assert rc == cli_lib.EXIT_NONFINITE
  assert "last good checkpoint (untouched): none yet" in _one_error_line(err)
  assert _steps(tmp_path / "teacher" / "checkpoints") == []


# ------------------------------------------------------------------ bad input


BAD_CONFIGS = [
    ("teacher", ["--config.teacher.bach_size=3"], "config.teacher.bach_size"),
    ("teacher", ["--config.teacher.batch_size=abc"], "config.teacher.batch_size"),
    ("teacher", ["--config.teacher.optim.lr=fast"], "config.teacher.optim.lr"),
    ("teacher", ["--config.progress=maybe"], "config.progress"),
    ("teacher", ["--config.teacher.batch_size=0"], "config.teacher.batch_size"),
    ("student", ["--config.student.batch_size=-64"], "config.student.batch_size"),
    ("teacher", ["--config.teacher.batch_size=6"], "config.teacher.batch_size"),  # 4 devices
    ("teacher", ["--config.teacher.optim.lr=0"], "config.teacher.optim.lr"),
    ("student", ["--config.student.optim.lr=-0.1"], "config.student.optim.lr"),
    ("student", ["--config.methods.krd.temperature=0"], "config.methods.krd.temperature"),
    ("demo", ["--config.methods.kd.temperature=-4"], "config.methods.kd.temperature"),
    ("teacher", ["--config.data.imbalance=0.5"], "config.data.imbalance"),
    ("student", ["--config.methods.krd.alpha=-1"], "config.methods.krd.alpha"),
    ("student", ["--config.methods.dkd.beta=-0.5"], "config.methods.dkd.beta"),
    ("student", ["--config.methods.krd.lam=1.5"], "config.methods.krd.lam"),
    ("student", ["--config.methods.krd.lam=-0.1"], "config.methods.krd.lam"),
    ("student", ["--config.student.method=kdd"], "config.student.method"),
    ("teacher", ["--config.teacher.epochs=0"], "config.teacher.epochs"),
    ("teacher", ["--config.teacher.model=resnet9"], "config.teacher.model"),
    ("teacher", ["--config.num_devices=5"], "config.num_devices"),
    ("teacher", ["--config.data.name=mnist_lt"], "config.data.name"),
    ("train", [], "command 'train'"),
    ("teacher", ["--bogus=1"], "--bogus"),
]


@pytest.mark.parametrize("command,args,key", BAD_CONFIGS,
                         ids=[" ".join([c, *a]) for c, a, _ in BAD_CONFIGS])
def test_bad_config_is_refused_in_one_line(tmp_path, in_process, capsys, command, args, key):
  rc, err = in_process(capsys, command, tmp_path / "w", *args)
  assert rc == cli_lib.EXIT_BAD_INPUT
  line = _one_error_line(err)
  assert key in line and "allowed" in line, line
  assert not (tmp_path / "w").exists()


def test_override_that_does_not_act_is_refused_in_one_line(tmp_path, in_process, capsys):
  """lam acts only with RRD, which is off by default: an override of it alone would run
  the default and read as a result about lam."""
  rc, err = in_process(capsys, "student", tmp_path / "w", "--config.methods.krd.lam=0.3")
  assert rc == cli_lib.EXIT_BAD_INPUT
  assert _one_error_line(err) == ("krd_jax: error: config.methods.krd.lam=0.3 has no effect "
                                  "in this run: it acts only with methods.krd.use_rrd=True")
  assert not (tmp_path / "w").exists()
  # digits_lt has a validation split: tau_from='auto' fits tau there, so tau is idle.
  rc, err = in_process(capsys, "demo", tmp_path / "w", "--config.methods.krd.tau=0.5")
  assert rc == cli_lib.EXIT_BAD_INPUT and "methods.krd.tau_from='fixed'" in err
  assert not (tmp_path / "w").exists()
  # With the switch that makes it act, or for a method this command does not train,
  # the override parses.
  for args in (["--config.methods.krd.use_rrd=True", "--config.methods.krd.lam=0.3"],
               ["--config.student.method=kd", "--config.methods.krd.lam=0.3"]):
    command, cfg = cli_lib.parse(["krd_jax", "student", f"--config={CONFIG}", *args])
    assert command == "student" and cfg.methods.krd.lam == 0.3


def test_bad_config_file_argument_is_refused(tmp_path, in_process, capsys):
  rc, err = in_process(capsys, "teacher", tmp_path / "w", config=CONFIG[:-len(":local")] + ":fast")
  assert rc == cli_lib.EXIT_BAD_INPUT
  assert "allowed: '' or 'local'" in _one_error_line(err)


def test_subprocess_exits_2_with_one_line(tmp_path):
  result = subprocess.run(
      [sys.executable, "-m", "krd_jax", "teacher", f"--config={CONFIG}",
       f"--config.workdir={tmp_path / 'w'}", "--config.teacher.optim.lr=abc"],
      capture_output=True, text=True, timeout=120, cwd=REPO,
      env=dict(os.environ, JAX_PLATFORMS="cpu"))
  assert result.returncode == 2
  line = _one_error_line(result.stderr)
  assert "config.teacher.optim.lr='abc'" in line and "float" in line
  assert not (tmp_path / "w").exists()


def _fake_teacher(path, **meta):
  path.mkdir(parents=True)
  (path / "teacher.json").write_text(json.dumps(
      {"model": "mlp", "model_kwargs": {"width": 256}, "num_classes": 10, **meta}))
  return path


@pytest.mark.parametrize("meta,needle", [
    (None, "needs a teacher"),
    (dict(model="small_cnn", model_kwargs={"width": 8}), "model='mlp'"),
    (dict(num_classes=100), "num_classes=10"),
])
def test_unusable_teacher_checkpoint_is_refused(tmp_path, in_process, capsys, meta, needle):
  given = tmp_path / "t"
  if meta is None:
    given.mkdir()  # A folder with no teacher in it.
  else:
    _fake_teacher(given, **meta)
  rc, err = in_process(capsys, "student", tmp_path / "w", "--config.student.method=kd",
                       f"--config.teacher.checkpoint={given}")
  assert rc == cli_lib.EXIT_BAD_INPUT
  line = _one_error_line(err)
  assert "config.teacher.checkpoint" in line and needle in line, line
  assert not (tmp_path / "w").exists()


def test_workdir_teacher_of_another_model_is_refused(tmp_path, in_process, capsys):
  _fake_teacher(tmp_path / "w" / "teacher", model="small_cnn", model_kwargs={"width": 8})
  before = sorted(p.name for p in (tmp_path / "w").rglob("*"))
  rc, err = in_process(capsys, "student", tmp_path / "w")
  assert rc == cli_lib.EXIT_BAD_INPUT
  assert "config.workdir" in _one_error_line(err)
  assert sorted(p.name for p in (tmp_path / "w").rglob("*")) == before


# ------------------------------------------------------------------ bad data


def _split_lists(tmp_path, train_lines):
  root, lists = tmp_path / "images", tmp_path / "lists"
  (root / "train" / "n0").mkdir(parents=True)
  lists.mkdir()
  (root / "train" / "n0" / "a.jpg").write_bytes(b"\xff\xd8\xff")
  (tmp_path / "outside.jpg").write_bytes(b"\xff\xd8\xff")
  (root / "train" / "n0" / "link.jpg").symlink_to(tmp_path / "outside.jpg")
  (lists / "ImageNet_LT_train.txt").write_text("\n".join(train_lines) + "\n")
  (lists / "ImageNet_LT_test.txt").write_text("train/n0/a.jpg 0\n")
  return ("--config.data.name=imagenet_lt", f"--config.data.data_dir={root}",
          f"--config.data.split_list_dir={lists}")


@pytest.mark.parametrize("line,needle", [
    ("../outside.jpg 0", "climbs out of the root"),
    ("/etc/hostname 0", "absolute path"),
    ("train/n0/link.jpg 0", "outside the root"),
    ("train/n0/a.jpg 1000", "labels"),
])
def test_split_list_escaping_the_root_is_refused(tmp_path, in_process, capsys, line, needle):
  args = _split_lists(tmp_path, ["train/n0/a.jpg 0", line])
  rc, err = in_process(capsys, "teacher", tmp_path / "w", *args)
  assert rc == cli_lib.EXIT_BAD_INPUT
  message = _one_error_line(err)
  assert "config.data.name='imagenet_lt'" in message and needle in message, message
  assert "ImageNet_LT_train.txt:2" in message or needle == "labels"
  assert not (tmp_path / "w").exists()


def _image_folder(root, classes=("a", "b"), per_class=2):
  rng = np.random.default_rng(0)
  for split in ("train", "test"):
    for name in classes:
      (root / split / name).mkdir(parents=True)
      for i in range(per_class):
        pixels = rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(root / split / name / f"{i}.png")
  return root


def test_image_folder_with_a_broken_image_is_refused(tmp_path, in_process, capsys):
  root = _image_folder(tmp_path / "folder")
  (root / "train" / "a" / "broken.jpg").write_bytes(b"not a jpeg at all")
  (root / "train" / "b" / "empty.png").write_bytes(b"")
  rc, err = in_process(capsys, "teacher", tmp_path / "w", "--config.data.name=image_folder",
                       f"--config.data.data_dir={root}")
  assert rc == cli_lib.EXIT_BAD_INPUT
  line = _one_error_line(err)
  assert "config.data.data_dir" in line and "2 are unreadable, cut short or not images" in line
  assert "train/a/broken.jpg" in line and not (tmp_path / "w").exists()


@pytest.mark.parametrize("fmt", ["PNG", "JPEG"])
def test_image_folder_with_a_truncated_image_is_refused(tmp_path, in_process, capsys, fmt):
  """A file cut short after a valid header (an interrupted copy) is refused like any
  unreadable image, not passed to the decoder."""
  root = _image_folder(tmp_path / "folder")
  pixels = np.random.default_rng(1).integers(0, 256, (16, 16, 3), dtype=np.uint8)
  whole = root / "train" / "a" / f"whole.{fmt.lower()}"
  Image.fromarray(pixels).save(whole, format=fmt)
  data = whole.read_bytes()
  # Whole files pass, trailing padding included; the same bytes cut short do not.
  (root / "train" / "b" / f"padded.{fmt.lower()}").write_bytes(data + b"\0" * 10)
  image_folder.check_image_folder(str(root))
  (root / "train" / "b" / f"cut.{fmt.lower()}").write_bytes(data[:len(data) // 2])
  rc, err = in_process(capsys, "teacher", tmp_path / "w", "--config.data.name=image_folder",
                       f"--config.data.data_dir={root}")
  assert rc == cli_lib.EXIT_BAD_INPUT
  line = _one_error_line(err)
  assert f"1 are unreadable, cut short or not images (e.g. train/b/cut.{fmt.lower()})" in line
  assert not (tmp_path / "w").exists()


def test_image_folder_ignores_non_image_files_with_a_count(tmp_path, caplog):
  root = _image_folder(tmp_path / "folder")
  (root / "train" / "a" / "README.txt").write_text("notes")
  (root / "train" / "b" / ".DS_Store").write_bytes(b"\0\1")
  image_folder.check_image_folder(str(root))
  assert "ignoring 2 file(s) without an image extension" in caplog.text


def test_image_folder_with_an_empty_class_is_refused(tmp_path, in_process, capsys):
  root = _image_folder(tmp_path / "folder")
  (root / "train" / "c").mkdir()
  rc, err = in_process(capsys, "teacher", tmp_path / "w", "--config.data.name=image_folder",
                       f"--config.data.data_dir={root}")
  assert rc == cli_lib.EXIT_BAD_INPUT
  assert "have no training images" in _one_error_line(err)
  assert not (tmp_path / "w").exists()
