"""Training: data-parallel equivalence, frozen teacher, learning, checkpoints, resume."""

import json
import os
import signal
import subprocess
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from krd_jax import runs
from krd_jax import sharding
from krd_jax.config import default_config
from krd_jax.data import from_arrays
from krd_jax.train import checkpoints as ckpt_lib
from krd_jax.train import teacher as teacher_lib
from krd_jax.train import student as student_lib
from krd_jax.train import state as state_lib
from krd_jax.train import evaluation
from krd_jax.train import steps as steps_lib

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _tiny_dataset(num_classes=4, per_class=(24, 12, 8, 4), seed=0):
  """A small long-tailed 8x8x1 set whose classes differ in mean brightness."""
  rng = np.random.default_rng(seed)
  def make(counts):
    labels = np.concatenate([np.full(n, c) for c, n in enumerate(counts)]).astype(np.int32)
    base = (labels[:, None, None, None] * 60 + 20).astype(np.float64)
    images = np.clip(base + rng.normal(0, 25, (len(labels), 8, 8, 1)), 0, 255)
    return images.astype(np.uint8), labels
  train_x, train_y = make(per_class)
  test_x, test_y = make([10] * num_classes)
  return from_arrays("tiny", train_x, train_y, test_x, test_y)


def _config(tmp_path, model="small_cnn", method="krd", epochs=1, num_devices=1):
  cfg = default_config().unlock()
  cfg.workdir = str(tmp_path)
  cfg.num_devices = num_devices
  cfg.progress = False
  for role in (cfg.teacher, cfg.student):
    role.model = model
    role.model_kwargs = {"width": 8}
    role.epochs = epochs
    role.batch_size = 16
    # SGD keeps tiny reduction-order differences tiny (Adam's normalisation would
    # amplify them where gradients are near zero).
    role.optim.name = "sgd"
    role.optim.lr = 0.05
  cfg.student.method = method
  # Both KRDistill terms, so the projector and the class-means pass are exercised too.
  cfg.methods.krd.use_rrd = True
  cfg.eval_every_epochs = 1
  cfg.checkpoint_every_epochs = 1
  cfg.log_every_steps = 1
  return cfg.lock()


def _leaves(tree):
  return [np.asarray(x) for x in jax.tree_util.tree_leaves(jax.device_get(tree))]


@pytest.mark.parametrize("role", ["teacher", "krd"])
def test_four_devices_equal_one_device(tmp_path, role):
  ds = _tiny_dataset()
  results = {}
  for n in (1, 4):
    cfg = _config(tmp_path / f"d{n}", epochs=2, num_devices=n)
    mesh = runs.make_mesh(cfg)
    assert mesh.devices.size == n
    teacher = teacher_lib.train_teacher(cfg, ds, mesh, str(tmp_path / f"d{n}" / "teacher"))
    if role == "teacher":
      results[n] = (teacher.variables, teacher.summary)
    else:
      summary = student_lib.train_student(cfg, ds, mesh, teacher, str(tmp_path / f"d{n}" / "s"))
      restored = ckpt_lib.RunCheckpoints(str(tmp_path / f"d{n}" / "s" / "checkpoints"))
      results[n] = (restored.manager.restore(restored.latest_step)["state"]["params"],
                    summary)
  for a, b in zip(_leaves(results[1][0]), _leaves(results[4][0])):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(results[1][1]["per_class"], results[4][1]["per_class"])


def test_student_steps_leave_teacher_bitwise_unchanged(tmp_path):
  ds = _tiny_dataset()
  cfg = _config(tmp_path, epochs=1)
  mesh = runs.make_mesh(cfg)
  teacher = teacher_lib.train_teacher(cfg, ds, mesh, str(tmp_path / "teacher"))
  before = _leaves(teacher.variables)
  student_lib.train_student(cfg, ds, mesh, teacher, str(tmp_path / "student"))
  after = _leaves(teacher.variables)
  for a, b in zip(before, after):
    assert a.tobytes() == b.tobytes()
  saved = teacher_lib.load_teacher(cfg.teacher, cfg.compute_dtype, ds, mesh,
                                   str(tmp_path / "teacher"))
  for a, b in zip(before, _leaves(saved.variables)):
    assert a.tobytes() == b.tobytes()


def test_short_digits_run_learns(tmp_path):
  cfg = default_config().unlock()
  cfg.workdir = str(tmp_path)
  cfg.progress = False
  cfg.teacher.epochs = 15
  cfg.data.cache_dir = str(tmp_path / "cache")
  cfg = cfg.lock()
  ds = runs.load_data(cfg)
  mesh = runs.make_mesh(cfg)
  model = state_lib.build_model(cfg.teacher, ds.num_classes, jnp.float32)
  untrained = state_lib.init_variables(model, ds.image_shape, jax.random.PRNGKey(0))
  from krd_jax.train import steps as steps_lib
  eval_step = steps_lib.jit_eval_step(
      steps_lib.make_eval_step(model, steps_lib.dataset_preprocess(cfg.data, ds, cfg.compute_dtype), ds.num_classes), mesh)
  before = evaluation.evaluate(eval_step, sharding.replicate(untrained, mesh), ds, "test", mesh)
  teacher = teacher_lib.train_teacher(cfg, ds, mesh, str(tmp_path / "teacher"))
  assert teacher.summary["balanced"] > before["balanced"] + 30
  assert teacher.summary["head"] > 80


def test_checkpoint_round_trip_is_exact(tmp_path):
  ds = _tiny_dataset()
  cfg = _config(tmp_path, epochs=1)
  mesh = runs.make_mesh(cfg)
  teacher_lib.train_teacher(cfg, ds, mesh, str(tmp_path / "teacher"))
  manager = ckpt_lib.RunCheckpoints(str(tmp_path / "teacher" / "checkpoints"))
  raw = manager.manager.restore(manager.latest_step)["state"]
  # Restore into a freshly initialised state of the same structure.
  from krd_jax.train import optim
  from krd_jax.train.state import create_state
  model = state_lib.build_model(cfg.teacher, ds.num_classes, jnp.float32)
  fresh = state_lib.init_variables(model, ds.image_shape, jax.random.PRNGKey(42))
  tx = optim.make_optimizer(cfg.teacher.optim, 1, 1)
  state = sharding.replicate(create_state({"model": fresh["params"]},
                                          fresh["batch_stats"], tx), mesh)
  restored, meta = manager.restore_latest(state)
  assert meta == {"epoch": 1}
  for a, b in zip(_leaves(restored.trainable()), _leaves(raw)):
    assert a.tobytes() == b.tobytes()


def _cli(workdir, *extra):
  return [sys.executable, "-m", "krd_jax", "teacher",
          "--config=digits_lt:local",
          f"--config.workdir={workdir}", "--config.progress=False",
          "--config.checkpoint_every_epochs=2", "--config.teacher.epochs=12", *extra]


@pytest.mark.slow  # the default run covers this in test_reliability's kill chain
def test_killed_run_resumes_to_identical_parameters(tmp_path):
  env = dict(os.environ, JAX_PLATFORMS="cpu", XLA_FLAGS="", KRD_JAX_CACHE=str(tmp_path / "c"))
  subprocess.run(_cli(tmp_path / "ref"), check=True, env=env, capture_output=True)
  proc = subprocess.Popen(_cli(tmp_path / "run"), env=env, stdout=subprocess.DEVNULL,
                          stderr=subprocess.DEVNULL)
  ckpts = tmp_path / "run" / "teacher" / "checkpoints"
  deadline = time.time() + 120
  while time.time() < deadline and proc.poll() is None:
    if ckpts.exists() and any(p.name.isdigit() for p in ckpts.iterdir()):
      break
    time.sleep(0.05)
  proc.send_signal(signal.SIGKILL)
  proc.wait()
  assert not (tmp_path / "run" / "teacher" / "teacher.json").exists(), \
      "the run finished before it could be killed; make it longer"
  subprocess.run(_cli(tmp_path / "run"), check=True, env=env, capture_output=True)
  ref = ckpt_lib.RunCheckpoints(str(tmp_path / "ref" / "teacher" / "checkpoints"))
  run = ckpt_lib.RunCheckpoints(str(tmp_path / "run" / "teacher" / "checkpoints"))
  assert ref.latest_step == run.latest_step
  a = ref.manager.restore(ref.latest_step)["state"]["params"]
  b = run.manager.restore(run.latest_step)["state"]["params"]
  for x, y in zip(_leaves(a), _leaves(b)):
    assert x.tobytes() == y.tobytes()


# The demo through the console script: tests/test_installed.py.


def test_streaming_image_folder_trains_and_evaluates(tmp_path):
  """A streamed (tf.data) dataset goes through the same loop as an in-memory one."""
  from PIL import Image
  rng = np.random.default_rng(0)
  for split, per_class in (("train", (12, 6, 4)), ("test", (3, 3, 3))):
    for label, count in enumerate(per_class):
      folder = tmp_path / "images" / split / f"class{label}"
      folder.mkdir(parents=True)
      for i in range(count):
        pixels = np.clip(label * 100 + rng.normal(0, 20, (8, 8, 3)), 0, 255)
        Image.fromarray(pixels.astype(np.uint8)).save(folder / f"{i}.png")
  cfg = _config(tmp_path / "run", model="mlp", method="kd", epochs=2).unlock()
  cfg.data.name = "image_folder"
  cfg.data.data_dir = str(tmp_path / "images")
  cfg.data.streaming = True
  cfg.data.image_size = 8
  cfg.data.cache_dir = str(tmp_path / "cache")
  for role in (cfg.teacher, cfg.student):
    role.batch_size = 8
  cfg = cfg.lock()
  ds = runs.load_data(cfg)
  assert ds.streaming and list(ds.train_counts) == [12, 6, 4]
  summary = runs.student(cfg)
  assert len(summary["per_class"]) == 3
  final = json.loads((tmp_path / "run" / "students" / "kd" / "final.json").read_text())
  assert final["test"]["per_class"] == summary["per_class"]
  teacher_log = (tmp_path / "run" / "teacher" / "metrics.jsonl").read_text().splitlines()
  assert json.loads(teacher_log[-1])["step"] == 2 * (22 // 8)


def test_evaluate_reads_the_newest_checkpoint_without_training(tmp_path):
  from krd_jax import validate
  cfg = default_config().unlock()
  cfg.workdir = str(tmp_path / "run")
  cfg.progress = False
  cfg.data.cache_dir = str(tmp_path / "cache")
  cfg.teacher.epochs = 2
  cfg.student.epochs = 2
  cfg.student.method = "kd"
  cfg = cfg.lock()
  with pytest.raises(validate.InputError, match="no saved teacher"):
    runs.evaluate(cfg)
  summary = runs.student(cfg)
  with pytest.raises(validate.InputError, match="train it first"):
    runs.evaluate(runs.with_method(cfg, "dkd"))
  files = sorted(p.name for p in (tmp_path / "run").rglob("*"))
  result = runs.evaluate(cfg)
  assert sorted(p.name for p in (tmp_path / "run").rglob("*")) == files  # nothing written
  assert result["student"]["step"] == 2 * (276 // 64)
  assert result["student"]["test"]["per_class"] == summary["per_class"]
  # The teacher and the student, each also post-hoc logit-adjusted (no val split: tau 1).
  assert len(result["rows"]) == 4
  assert sum("post-hoc LA (tau 1, no val split)" in name for name in result["rows"]) == 2
  assert result["student"]["post_hoc"]["tau"] == 1.0


def test_post_hoc_logit_adjustment_chooses_tau_on_val_only():
  """argmax(z - tau log pi) for every tau of the grid; tau picked by balanced accuracy on
  the validation split, the test split only reported (numpy reference on the logits)."""
  from krd_jax import priors
  from krd_jax.train import metrics as metrics_lib
  ds = _tiny_dataset()
  val = _tiny_dataset(seed=5)
  ds.val_images, ds.val_labels = val.test_images, val.test_labels
  cfg = _config("unused", model="mlp")
  model = state_lib.build_model(cfg.teacher, ds.num_classes, jnp.float32)
  variables = state_lib.init_variables(model, ds.image_shape, jax.random.PRNGKey(3))
  preprocess = steps_lib.dataset_preprocess(cfg.data, ds, cfg.compute_dtype)
  mesh = runs.make_mesh(cfg)
  result = evaluation.post_hoc_adjusted(model, variables, preprocess, ds, mesh)

  log_pi = np.log(np.asarray(ds.train_counts, np.float64) / np.sum(ds.train_counts))
  np.testing.assert_allclose(log_pi, priors.log_prior(ds.train_counts), rtol=1e-6)

  def balanced(images, labels, tau):
    logits, _ = model.apply(variables, preprocess(jnp.asarray(images), None), train=False)
    predicted = np.argmax(np.asarray(logits, np.float64) - tau * log_pi, 1)
    return np.mean([np.mean(predicted[labels == c] == c) for c in range(ds.num_classes)])

  val_scores = [balanced(ds.val_images, ds.val_labels, tau)
                for tau in evaluation.POST_HOC_TAUS]
  # The best val score; among ties, the tau closest to 1.
  taus = evaluation.POST_HOC_TAUS
  best = min((t for t, v in zip(taus, val_scores) if v == max(val_scores)),
             key=lambda t: abs(t - 1.0))
  assert result["tau"] == best and result["chosen_on"] == "val"
  # The host-side fit KRDistill's tau_from="val" uses (calibration.post_hoc_tau on the
  # logits teacher.split_logits gathers) chooses the same tau.
  import types
  from krd_jax import calibration
  logits, labels = teacher_lib.split_logits(
      types.SimpleNamespace(model=model, variables=variables), ds, mesh, preprocess, "val")
  np.testing.assert_array_equal(labels, ds.val_labels)
  assert calibration.post_hoc_tau(logits, labels, log_pi)[0] == best
  np.testing.assert_allclose(result["val"]["balanced"], 100 * max(val_scores), rtol=1e-6)
  np.testing.assert_allclose(result["test"]["balanced"],
                             100 * balanced(ds.test_images, ds.test_labels, best), rtol=1e-6)
  assert set(result["test"]) == set(metrics_lib.summarize(
      np.ones(4), np.ones(4), ds.train_counts))
  # Without a validation split: tau = 1, and it says so.
  ds.val_images = ds.val_labels = None
  plain = evaluation.post_hoc_adjusted(model, variables, preprocess, ds, mesh)
  assert plain["tau"] == 1.0 and plain["chosen_on"] == "none (tau = 1)"
  np.testing.assert_allclose(plain["test"]["balanced"],
                             100 * balanced(ds.test_images, ds.test_labels, 1.0), rtol=1e-6)


def test_cpu_steps_compile_with_the_library_xla_options():
  """On CPU the jitted steps leave convolutions to XLA's own emitter (faster here than
  YNNPACK, RESULTS.md); elsewhere XLA's defaults. Checked in the compiled HLO: without the
  options this convolution (nothing else in the program) is a YNNPACK fusion."""
  from krd_jax.models import layers
  mesh = sharding.make_mesh(1)
  assert steps_lib.compiler_options(mesh) == steps_lib.CPU_COMPILER_OPTIONS

  def step(kernel, x):
    return layers._conv(x, kernel, 1, 1, 1)  # pylint: disable=protected-access

  args = (jnp.ones((3, 3, 32, 32)), jnp.ones((2, 8, 8, 32)))
  library = steps_lib.jit_eval_step(step, mesh).lower(*args).compile().as_text()
  xla = jax.jit(step).lower(*args).compile().as_text()
  assert "__ynn_fusion" in xla and "__ynn_fusion" not in library
  assert "convolution(" in library


def test_per_class_plot_draws_identical_runs_as_one_line(tmp_path, monkeypatch):
  """A post-hoc row at tau 0 is its run: one line, named for both, not two lines of
  which one hides the other."""
  from krd_jax.train import metrics as metrics_lib
  merged = metrics_lib.merge_identical({"a": [10.0, 20.0], "b": [30.0, 40.0],
                                        "a + post-hoc LA (tau 0)": [10.0, 20.0]})
  assert list(merged) == ["b", "a (= post-hoc LA (tau 0))"]
  np.testing.assert_array_equal(merged["a (= post-hoc LA (tau 0))"], [10.0, 20.0])
  assert list(metrics_lib.merge_identical({"a": [1.0], "b": [1.0 + 1e-9]})) == ["a", "b"]
  assert list(metrics_lib.merge_identical({"a": [1.0], "b": [1.0]})) == ["a = b"]
  path = metrics_lib.plot_per_class(merged, np.array([100, 10]), str(tmp_path / "p.png"))
  assert os.path.getsize(path) > 1000
  # A teacher merged with its tau-0 post-hoc row keeps the teacher's dashed line; a
  # post-hoc row of its own is dotted.
  styles = {}
  save = metrics_lib.save_with_legend_beside

  def record(fig, ax, path):
    styles.update({line.get_label(): line.get_linestyle() for line in ax.get_lines()})
    return save(fig, ax, path)

  monkeypatch.setattr(metrics_lib, "save_with_legend_beside", record)
  metrics_lib.plot_per_class(
      {"teacher t": [1.0, 2.0], "teacher t + post-hoc LA (tau 0)": [1.0, 2.0],
       "teacher u": [3.0, 4.0], "teacher u + post-hoc LA (tau 1)": [5.0, 6.0]},
      np.array([100, 10]), str(tmp_path / "q.png"))
  assert styles == {"teacher t (= post-hoc LA (tau 0))": "--", "teacher u": "--",
                    "teacher u + post-hoc LA (tau 1)": ":"}
