"""ReviewKD: HCL against float64 numpy, the fusion modules against a PyTorch ABF written
from the authors' description (where torch is installed: CI), the modules built from the
stage shapes, and the objective as CE + weight * sum of HCL over levels."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from krd_jax import methods
from krd_jax.losses import review
from krd_jax.methods import reviewkd

B = 4


def np_pool(a, size):
  b, h, w, c = a.shape
  return a.reshape(b, size, h // size, size, w // size, c).mean(axis=(2, 4))


def np_hcl(s, t):
  loss, weight, total = ((s - t) ** 2).mean(axis=(1, 2, 3)), 1.0, 1.0
  for size in (4, 2, 1):
    if size < s.shape[1]:
      weight /= 2
      loss = loss + weight * ((np_pool(s, size) - np_pool(t, size)) ** 2).mean(axis=(1, 2, 3))
      total += weight
  return loss / total


@pytest.mark.parametrize("size", [8, 4, 2, 1])
def test_hcl_golden(size):
  r = np.random.default_rng(size)
  s, t = r.normal(size=(B, size, size, 3)), r.normal(size=(B, size, size, 3))
  np.testing.assert_allclose(review.hcl_loss(s, t), np_hcl(s, t), rtol=1e-5)
  np.testing.assert_allclose(review.hcl_loss(t, t), 0.0, atol=1e-7)


def _example(r):
  """Stage maps of a 3-stage student (8, 16, 32 channels at 8, 4, 2) and teacher."""
  f32 = lambda a: jnp.asarray(a, jnp.float32)
  s = {n: f32(r.normal(size=(B, 8 >> k, 8 >> k, 8 << k)))
       for k, n in enumerate(reviewkd.STUDENT_STAGES)}
  t = {n: f32(r.normal(size=(B, 8 >> k, 8 >> k, 16 << k)))
       for k, n in enumerate(reviewkd.TEACHER_STAGES)}
  return methods.StudentOutputs(
      student_logits=f32(r.normal(size=(B, 3))), student_features=f32(r.normal(size=(B, 32))),
      teacher_logits=f32(r.normal(size=(B, 3))), teacher_features=f32(r.normal(size=(B, 64))),
      labels=jnp.asarray(r.integers(0, 3, B), jnp.int32), student_stages=s, teacher_stages=t)


def test_fusion_modules_are_built_from_the_stage_shapes_and_the_objective_sums_hcl():
  r = np.random.default_rng(0)
  out = _example(r)
  objective = methods.objective("reviewkd", np.array([10, 5, 2]), review_weight=5.0)
  shapes = jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype), out)
  # jit: one compile instead of op-by-op dispatch of every layer's initialisation.
  params = jax.jit(lambda rng: objective.init_params(rng, shapes))(jax.random.PRNGKey(0))
  assert sorted(params) == ["abf0", "abf1", "abf2", "abf3"]
  # Middle width min(512, student pooled width 32); each output at the teacher's width.
  assert params["abf0"]["Conv_0"]["kernel"].shape == (1, 1, 32, 32)
  assert params["abf0"]["Conv_1"]["kernel"].shape == (3, 3, 32, 64)
  assert params["abf3"]["Conv_0"]["kernel"].shape == (1, 1, 8, 32)
  assert params["abf3"]["Conv_2"]["kernel"].shape == (3, 3, 32, 16)
  assert "Conv_1" in params["abf1"] and params["abf1"]["Conv_1"]["kernel"].shape == (1, 1, 64, 2)
  # One compile for the objective and its gradient.
  (loss, metrics), grads = jax.jit(jax.value_and_grad(
      lambda p: objective.fn(out.replace(params=p), 0.5), has_aux=True))(params)
  out = out.replace(params=params)
  levels = reviewkd._levels(out.student_stages, reviewkd.STUDENT_STAGES, out.student_features)
  fused, _ = reviewkd.ReviewFusion(32, [16, 32, 64, 64]).apply(
      {"params": params}, levels, mutable=["batch_stats"])
  teacher = reviewkd._levels(out.teacher_stages, reviewkd.TEACHER_STAGES, out.teacher_features)
  hcl = sum(np_hcl(np.asarray(f, np.float64), np.asarray(t, np.float64)).mean()
            for f, t in zip(fused, teacher))
  np.testing.assert_allclose(metrics["review"], 0.5 * 5.0 * hcl, rtol=1e-4)
  assert all(float(jnp.abs(g).sum()) > 0 for g in jax.tree.leaves(grads))


def test_fusion_matches_a_pytorch_abf_written_from_the_authors_description():
  torch = pytest.importorskip("torch", reason="PyTorch is not installed: this cross-check "
                              "runs in CI, where requirements-ci.txt installs it")
  F = torch.nn.functional
  r = np.random.default_rng(1)
  out = _example(r)
  shapes = jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype), out)
  objective = methods.objective("reviewkd", np.array([10, 5, 2]))
  params = jax.jit(lambda rng: objective.init_params(rng, shapes))(jax.random.PRNGKey(1))
  levels = reviewkd._levels(out.student_stages, reviewkd.STUDENT_STAGES, out.student_features)
  fused, _ = reviewkd.ReviewFusion(32, [16, 32, 64, 64]).apply(
      {"params": params}, levels, mutable=["batch_stats"])

  def tensor(a):  # NHWC -> NCHW
    return torch.tensor(np.asarray(a, np.float64)).permute(0, 3, 1, 2)

  def conv(x, kernel, bias=None, padding=0):  # HWIO -> OIHW
    w = torch.tensor(np.asarray(kernel, np.float64)).permute(3, 2, 0, 1)
    b = None if bias is None else torch.tensor(np.asarray(bias, np.float64))
    return F.conv2d(x, w, b, padding=padding)

  def bn(x, p):  # training mode: batch statistics, biased variance, eps 1e-5
    mean = x.mean(dim=(0, 2, 3), keepdim=True)
    var = x.var(dim=(0, 2, 3), unbiased=False, keepdim=True)
    scale = torch.tensor(np.asarray(p["scale"], np.float64)).view(1, -1, 1, 1)
    shift = torch.tensor(np.asarray(p["bias"], np.float64)).view(1, -1, 1, 1)
    return (x - mean) / torch.sqrt(var + 1e-5) * scale + shift

  def abf(p, x, residual=None):
    x = bn(conv(x, p["Conv_0"]["kernel"]), p["BatchNorm_0"])
    if residual is not None:
      residual = F.interpolate(residual, size=x.shape[-2:], mode="nearest")
      z = torch.sigmoid(conv(torch.cat([x, residual], 1), p["Conv_1"]["kernel"],
                             p["Conv_1"]["bias"]))
      x = x * z[:, :1] + residual * z[:, 1:]
      last = "Conv_2"
    else:
      last = "Conv_1"
    return bn(conv(x, p[last]["kernel"], padding=1), p["BatchNorm_1"]), x

  xs = [tensor(a) for a in levels][::-1]
  y, residual = abf(params["abf0"], xs[0])
  want = [y]
  for k, x in enumerate(xs[1:]):
    y, residual = abf(params[f"abf{k + 1}"], x, residual)
    want.insert(0, y)
  for got, ref in zip(fused, want):
    np.testing.assert_allclose(np.asarray(got), ref.permute(0, 2, 3, 1).numpy(), rtol=2e-4,
                               atol=2e-5)


def test_hcl_gradient_against_central_differences():
  r = np.random.default_rng(9)
  s, t = r.normal(size=(2, 4, 4, 2)), r.normal(size=(2, 4, 4, 2))
  got = jax.grad(lambda x: review.hcl_loss(x, t).mean())(jnp.asarray(s, jnp.float32))
  want = np.zeros_like(s)
  for i in np.ndindex(s.shape):
    up, down = s.copy(), s.copy()
    up[i] += 1e-6
    down[i] -= 1e-6
    want[i] = (np_hcl(up, t).mean() - np_hcl(down, t).mean()) / 2e-6
  np.testing.assert_allclose(got, want, rtol=1e-3, atol=1e-6)
