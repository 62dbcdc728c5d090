"""FitNet: the hint loss and objective against float64 numpy, its own trained regressor,
and a FitNet student trained end to end (the method is one module; nothing else lists it)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from krd_jax import losses
from krd_jax import methods
from krd_jax import runs
from krd_jax.config import default_config
from krd_jax.data import from_arrays
from krd_jax.train import checkpoints as ckpt_lib
from krd_jax.train import student as student_lib
from krd_jax.train import teacher as teacher_lib

B, C, D_S, D_T = 6, 4, 3, 5


def _inputs(seed=0):
  rng = np.random.default_rng(seed)
  return dict(s=rng.normal(size=(B, C)), y=rng.integers(0, C, B),
              f=rng.normal(size=(B, D_S)), h=rng.normal(size=(B, D_T)) + 0.5,
              kernel=rng.normal(size=(D_S, D_T)), bias=rng.normal(size=D_T))


def _np_ce(s, y):
  log_p = s - np.log(np.exp(s - s.max(1, keepdims=True)).sum(1, keepdims=True)) - s.max(
      1, keepdims=True)
  return -log_p[np.arange(len(y)), y]


def _f32(a):
  return {k: (jnp.asarray(v, jnp.float32) if np.asarray(v).dtype.kind == "f" else
              jnp.asarray(v, jnp.int32)) for k, v in a.items()}


def test_hint_loss_golden_and_zero_at_match():
  a = _inputs()
  g = a["f"] @ a["kernel"] + a["bias"]
  value = losses.hint_loss(jnp.asarray(g, jnp.float32), jnp.asarray(a["h"], jnp.float32))
  assert value.shape == (B,) and value.dtype == jnp.float32
  np.testing.assert_allclose(value, np.mean((g - a["h"]) ** 2, axis=1), rtol=1e-5)
  np.testing.assert_allclose(losses.hint_loss(a["h"], a["h"]), 0.0, atol=1e-7)
  with pytest.raises(ValueError, match="teacher_features has shape"):
    losses.hint_loss(g, a["h"][:, :-1])


def test_fitnet_objective_and_regressor_gradient_golden():
  a = _inputs(1)
  counts = np.array([40, 20, 8, 2])
  objective = methods.objective("fitnet", counts, hint_weight=100.0, ce_weight=1.0,
                                hint_on="pooled")
  assert objective.needs_teacher
  shapes = methods.StudentOutputs(student_logits=jax.ShapeDtypeStruct((1, 4), jnp.float32),
                                  student_features=jax.ShapeDtypeStruct((1, D_S), jnp.float32),
                                  teacher_features=jax.ShapeDtypeStruct((1, D_T), jnp.float32))
  made = objective.init_params(jax.random.PRNGKey(0), shapes)
  assert jax.tree.map(np.shape, made) == {"kernel": (D_S, D_T), "bias": (D_T,)}

  x = _f32(a)
  outputs = methods.StudentOutputs(
      student_logits=x["s"], student_features=x["f"], teacher_features=x["h"],
      teacher_logits=x["s"], labels=x["y"],
      params={"kernel": x["kernel"], "bias": x["bias"]})
  loss, metrics = jax.jit(objective.fn)(outputs, 0.5)
  residual = a["f"] @ a["kernel"] + a["bias"] - a["h"]
  hint = 100.0 * np.mean(residual ** 2)
  ce = np.mean(_np_ce(a["s"], a["y"]))
  np.testing.assert_allclose(metrics["hint"], 0.5 * hint, rtol=1e-5)
  np.testing.assert_allclose(loss, ce + 0.5 * hint, rtol=1e-5)

  # d/dW of 100 mean((fW + b - h)^2) = 200 / (B d_t) f^T r; d/db = 200 / (B d_t) sum r.
  grads = jax.grad(lambda p: objective.fn(outputs.replace(params=p), 1.0)[0])(outputs.params)
  np.testing.assert_allclose(grads["kernel"], 200.0 / (B * D_T) * a["f"].T @ residual,
                             rtol=1e-4)
  np.testing.assert_allclose(grads["bias"], 200.0 / (B * D_T) * residual.sum(0), rtol=1e-4)

  with pytest.raises(ValueError, match="StudentOutputs.params"):
    objective.fn(outputs.replace(params=None), 1.0)


def _tiny_dataset(seed=0):
  rng = np.random.default_rng(seed)

  def make(counts):
    labels = np.concatenate([np.full(n, c) for c, n in enumerate(counts)]).astype(np.int32)
    images = np.clip(labels[:, None, None, None] * 60.0 + 20 +
                     rng.normal(0, 25, (len(labels), 8, 8, 1)), 0, 255)
    return images.astype(np.uint8), labels

  return from_arrays("tiny", *make((24, 12, 8, 4)), *make([10] * 4))


def test_fitnet_student_trains_its_regressor(tmp_path):
  """Teacher 8 wide, student 4 wide: the conv regressor maps the student's stage-2 map
  (8 channels) to the teacher's (16), lives in params["method"] of the checkpoint, and
  training moves it."""
  cfg = default_config().unlock()
  cfg.workdir, cfg.progress = str(tmp_path), False
  for role, width in ((cfg.teacher, 8), (cfg.student, 4)):
    role.model, role.model_kwargs, role.epochs, role.batch_size = (
        "small_cnn", {"width": width}, 1, 16)
  cfg.student.method = "fitnet"
  cfg.eval_every_epochs = cfg.checkpoint_every_epochs = 1
  cfg = cfg.lock()
  ds, mesh = _tiny_dataset(), runs.make_mesh(cfg)
  teacher = teacher_lib.train_teacher(cfg, ds, mesh, str(tmp_path / "teacher"))
  initial = student_lib.student_setup(cfg, ds, mesh, teacher).state.params["method"]
  summary = student_lib.train_student(cfg, ds, mesh, teacher, str(tmp_path / "student"))
  assert 0 <= summary["balanced"] <= 100
  saved = ckpt_lib.RunCheckpoints(str(tmp_path / "student" / "checkpoints"))
  trained = saved.manager.restore(saved.latest_step)["state"]["params"]["method"]
  saved.close()
  kernel, start = trained["Conv_0"]["kernel"], initial["Conv_0"]["kernel"]
  assert kernel.shape == start.shape == (1, 1, 8, 16)
  assert not np.allclose(kernel, start)


def _np_bn_relu(x, scale, shift):
  mean, var = x.mean(axis=(0, 1, 2)), x.var(axis=(0, 1, 2))
  return np.maximum((x - mean) / np.sqrt(var + 1e-5) * scale + shift, 0.0)


def test_stage2_hint_through_a_conv_regressor_golden():
  """The authors' hint: stage-2 maps, a 1x1 conv (equal sizes) + BatchNorm with batch
  statistics + ReLU to the teacher's channels, MSE weighted 100; a student map twice the
  teacher's size gets a 3x3 stride-2 conv; other sizes are refused."""
  rng = np.random.default_rng(3)
  counts = np.array([40, 20, 8, 2])
  objective = methods.objective("fitnet", counts)
  assert methods.get("fitnet").reads({}) == {"student": ("stage2",), "teacher": ("stage2",),
                                             "indices": False}
  s_map, t_map = rng.normal(size=(B, 4, 4, 3)), rng.normal(size=(B, 4, 4, 5))
  logits, y = rng.normal(size=(B, C)), rng.integers(0, C, B)
  out = methods.StudentOutputs(
      student_logits=jnp.asarray(logits, jnp.float32), teacher_logits=jnp.asarray(logits, jnp.float32),
      labels=jnp.asarray(y, jnp.int32), student_stages={"stage2": jnp.asarray(s_map, jnp.float32)},
      teacher_stages={"stage2": jnp.asarray(t_map, jnp.float32)})
  shapes = jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype), out)
  params = objective.init_params(jax.random.PRNGKey(0), shapes)
  assert params["Conv_0"]["kernel"].shape == (1, 1, 3, 5)
  params = jax.tree.map(lambda a: a + 0.1 * jnp.asarray(rng.normal(size=a.shape), jnp.float32),
                        params)
  loss, metrics = jax.jit(objective.fn)(out.replace(params=params), 1.0)
  p = jax.tree.map(lambda a: np.asarray(a, np.float64), params)
  conv = s_map @ p["Conv_0"]["kernel"][0, 0] + p["Conv_0"]["bias"]
  regressed = _np_bn_relu(conv, p["BatchNorm_0"]["scale"], p["BatchNorm_0"]["bias"])
  want = 100.0 * np.mean((regressed - t_map) ** 2)
  np.testing.assert_allclose(metrics["hint"], want, rtol=1e-4)
  np.testing.assert_allclose(loss, np.mean(_np_ce(logits, y)) + want, rtol=1e-4)

  twice = out.replace(student_stages={"stage2": jnp.zeros((B, 8, 8, 3))})
  shapes = jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype), twice)
  assert objective.init_params(jax.random.PRNGKey(0), shapes)["Conv_0"]["kernel"].shape == (
      3, 3, 3, 5)
  odd = out.replace(student_stages={"stage2": jnp.zeros((B, 6, 6, 3))})
  with pytest.raises(ValueError, match="allowed: equal sizes"):
    objective.init_params(jax.random.PRNGKey(0),
                          jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype), odd))
