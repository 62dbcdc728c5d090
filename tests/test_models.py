"""Tests for the model zoo: interface, parameter counts, BatchNorm modes, dtypes."""

from __future__ import annotations

import functools
import importlib.util
import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import traverse_util

from krd_jax import sharding
from krd_jax.models import create_model, feature_dim, input_shape, model_names
from krd_jax.models import flops
from krd_jax.models import layers

ROOT = pathlib.Path(__file__).resolve().parents[1]

ALL_NAMES = [
    "resnet8", "resnet14", "resnet20", "resnet32", "resnet44", "resnet56",
    "resnet110", "resnet8x4", "resnet32x4", "wrn_16_2", "wrn_40_2", "mobilenetv2",
    "shufflenetv2", "resnet18", "resnet50", "mlp", "small_cnn",
]
# Real forward passes only for the cheap ones; the rest are checked abstractly.
SMALL = ["resnet8", "resnet8x4", "wrn_16_2", "mobilenetv2", "shufflenetv2", "mlp",
         "small_cnn"]
# Train-mode forward passes (slow to compile for the depthwise-conv models, whose
# train mode is covered abstractly).
TRAIN_SMALL = ["resnet8", "resnet8x4", "wrn_16_2", "mlp", "small_cnn"]


def _num_classes(name: str) -> int:
  if name in ("resnet18", "resnet50"):
    return 1000
  return 10 if name in ("mlp", "small_cnn") else 100


def _batch(name: str, batch: int = 2, seed: int = 0) -> np.ndarray:
  return np.random.RandomState(seed).randn(batch, *input_shape(name)).astype(np.float32)


def _abstract_variables(model, x):
  return jax.eval_shape(lambda k: model.init(k, x, train=False), jax.random.key(0))


@functools.lru_cache(maxsize=None)
def _abstract_variables_of(name: str):
  """Shapes and dtypes of the named model's variables (float32 for any `dtype`)."""
  model = create_model(name, _num_classes(name))
  return _abstract_variables(model, jnp.zeros((1, *input_shape(name)), jnp.float32))


def _param_count(variables) -> int:
  return sum(int(np.prod(p.shape)) for p in jax.tree_util.tree_leaves(variables["params"]))


# --- Parameter counts, derived by hand from the PyTorch reference definitions. ---
# conv: k*k*cin/groups*cout (no bias); BN: 2c (running stats are not parameters);
# linear: cin*cout + cout.


def _conv(cin: int, cout: int, k: int, groups: int = 1) -> int:
  return k * k * cin // groups * cout


def _bn(c: int) -> int:
  return 2 * c


def _fc(cin: int, cout: int) -> int:
  return cin * cout + cout


def _cifar_resnet(depth: int, filters: tuple[int, ...], c: int) -> int:
  """mdistiller `resnet.py`: stem + 3 stages of basic blocks (+ 1x1 projections)."""
  n = (depth - 2) // 6
  total = _conv(3, filters[0], 3) + _bn(filters[0])
  cin = filters[0]
  for stage, width in enumerate(filters[1:]):
    for i in range(n):
      total += _conv(cin, width, 3) + _bn(width) + _conv(width, width, 3) + _bn(width)
      if (stage > 0 and i == 0) or cin != width:
        total += _conv(cin, width, 1) + _bn(width)
      cin = width
  return total + _fc(cin, c)


def _wrn(depth: int, k: int, c: int) -> int:
  """CRD `wrn.py`: pre-activation blocks; 1x1 shortcut where the width changes."""
  n = (depth - 4) // 6
  total = _conv(3, 16, 3)
  cin = 16
  for width in (16 * k, 32 * k, 64 * k):
    for _ in range(n):
      total += _bn(cin) + _conv(cin, width, 3) + _bn(width) + _conv(width, width, 3)
      total += _conv(cin, width, 1) if cin != width else 0
      cin = width
  return total + _bn(cin) + _fc(cin, c)


def _mobilenetv2_half(c: int) -> int:
  """CRD `mobile_half`: T = 6, width 0.5, expansion conv kept when t = 1."""
  stages = ((1, 16, 1), (6, 24, 2), (6, 32, 3), (6, 64, 4), (6, 96, 3), (6, 160, 3),
            (6, 320, 1))
  cin = 16
  total = _conv(3, cin, 3) + _bn(cin)
  for t, width, n in stages:
    width //= 2
    for _ in range(n):
      hidden = cin * t
      total += _conv(cin, hidden, 1) + _bn(hidden)
      total += _conv(hidden, hidden, 3, groups=hidden) + _bn(hidden)
      total += _conv(hidden, width, 1) + _bn(width)
      cin = width
  return total + _conv(cin, 1280, 1) + _bn(1280) + _fc(1280, c)


def _shufflenetv2(c: int) -> int:
  """mdistiller `ShuffleV2`: 1x1 stem, (116, 232, 464) x (3, 7, 3), 1024 head."""
  total = _conv(3, 24, 1) + _bn(24)
  cin = 24
  for width, n in zip((116, 232, 464), (3, 7, 3)):
    mid = width // 2
    total += _conv(cin, cin, 3, groups=cin) + _bn(cin) + _conv(cin, mid, 1) + _bn(mid)
    total += _conv(cin, mid, 1) + _bn(mid) + _conv(mid, mid, 3, groups=mid) + _bn(mid)
    total += _conv(mid, mid, 1) + _bn(mid)
    total += n * (2 * (_conv(mid, mid, 1) + _bn(mid))
                  + _conv(mid, mid, 3, groups=mid) + _bn(mid))
    cin = width
  return total + _conv(cin, 1024, 1) + _bn(1024) + _fc(1024, c)


# name -> (exact count from the reference definition, published count in M).
# CIFAR models at 100 classes as in the CRD tables; the published figures are
# rounded (or truncated: 1.7366M is quoted as 1.73M, 1.3555M as 1.35M), hence the
# 0.01M tolerance. torchvision's counts are published exactly.
PARAM_COUNTS = {
    "resnet8": (_cifar_resnet(8, (16, 16, 32, 64), 100), 0.08),
    "resnet20": (_cifar_resnet(20, (16, 16, 32, 64), 100), 0.28),
    "resnet32": (_cifar_resnet(32, (16, 16, 32, 64), 100), 0.47),
    "resnet56": (_cifar_resnet(56, (16, 16, 32, 64), 100), 0.86),
    "resnet110": (_cifar_resnet(110, (16, 16, 32, 64), 100), 1.73),
    "resnet8x4": (_cifar_resnet(8, (32, 64, 128, 256), 100), 1.23),
    "resnet32x4": (_cifar_resnet(32, (32, 64, 128, 256), 100), 7.43),
    "wrn_16_2": (_wrn(16, 2, 100), 0.70),
    "wrn_40_2": (_wrn(40, 2, 100), 2.26),
    "mobilenetv2": (_mobilenetv2_half(100), 0.81),
    "shufflenetv2": (_shufflenetv2(100), 1.35),
    "resnet18": (11_689_512, 11.689512),
    "resnet50": (25_557_032, 25.557032),
}


def test_model_names():
  assert model_names() == ALL_NAMES


@pytest.mark.parametrize("name", sorted(PARAM_COUNTS))
def test_param_count_matches_reference(name):
  exact, published_m = PARAM_COUNTS[name]
  count = _param_count(_abstract_variables_of(name))
  assert count == exact
  assert abs(count / 1e6 - published_m) < 0.01


def test_hand_formulas_match_pytorch_counts():
  # What PyTorch reports for the mdistiller definitions at 100 classes (guards the
  # formulas themselves).
  assert _cifar_resnet(32, (16, 16, 32, 64), 100) == 472_756
  assert _cifar_resnet(8, (32, 64, 128, 256), 100) == 1_233_540
  assert _wrn(16, 2, 100) == 703_284
  assert _wrn(40, 2, 100) == 2_255_156
  assert _mobilenetv2_half(100) == 812_836
  assert _shufflenetv2(100) == 1_355_528


@pytest.mark.parametrize(
    "name,dtype",
    [(n, jnp.float32) for n in ALL_NAMES]
    # bfloat16 for one model per family (resnet8, mlp, small_cnn run it for real).
    + [(n, jnp.bfloat16)
       for n in ("resnet32x4", "wrn_40_2", "mobilenetv2", "shufflenetv2", "resnet50")])
def test_output_shapes_and_dtypes_abstract(name, dtype):
  c = _num_classes(name)
  model = create_model(name, c, dtype=dtype)
  x = jnp.zeros((2, *input_shape(name)), dtype)
  variables = _abstract_variables_of(name)
  if dtype != jnp.float32:  # parameters stay float32 whatever the computation dtype
    assert jax.tree_util.tree_all(jax.tree_util.tree_map(
        lambda a, b: a.shape == b.shape and a.dtype == b.dtype == jnp.float32,
        _abstract_variables(model, x), variables))
  logits, features = jax.eval_shape(
      lambda v, x: model.apply(v, x, train=False), variables, x)
  assert logits.shape == (2, c) and logits.dtype == jnp.float32
  assert features.shape == (2, feature_dim(name)) and features.dtype == jnp.float32
  (logits, features), updates = jax.eval_shape(
      lambda v, x: model.apply(v, x, train=True, mutable=["batch_stats"]), variables, x)
  assert logits.shape == (2, c) and features.shape == (2, feature_dim(name))
  assert jax.tree_util.tree_structure(updates.get("batch_stats", {})) == (
      jax.tree_util.tree_structure(variables.get("batch_stats", {})))


def _fake_variables(name: str, seed: int = 0):
  """Variables of the right structure filled from NumPy, without `model.init`.

  Random initialisation compiles slowly on XLA:CPU (threefry), so the forward
  tests use He-scaled normal kernels, random BN affine parameters and running
  statistics instead; `test_initialisation` covers the real initialisers.
  """
  rng = np.random.RandomState(seed)
  flat = traverse_util.flatten_dict(_abstract_variables_of(name))
  values = {}
  for path, leaf in flat.items():
    if path[-1] == "kernel":
      fan_in = int(np.prod(leaf.shape[:-1]))
      value = rng.randn(*leaf.shape) * np.sqrt(2.0 / fan_in)
    elif path[-1] == "var":
      value = rng.uniform(0.5, 2.0, leaf.shape)
    elif path[-1] == "scale":
      value = rng.uniform(0.5, 1.5, leaf.shape)
    else:  # bias, mean
      value = rng.uniform(-0.2, 0.2, leaf.shape)
    values[path] = jnp.asarray(value, leaf.dtype)
  return traverse_util.unflatten_dict(values)


def _jitted_apply(model):
  def apply(variables, x, train):
    if train:
      return model.apply(variables, x, train=True, mutable=["batch_stats"])
    return model.apply(variables, x, train=False), {}
  return jax.jit(apply, static_argnums=2)


@functools.lru_cache(maxsize=None)
def _small_model(name: str):
  """(variables, x, jitted apply(variables, x, train)) for one cheap model."""
  model = create_model(name, _num_classes(name))
  return _fake_variables(name), jnp.asarray(_batch(name, batch=4)), _jitted_apply(model)


@pytest.mark.parametrize("name", SMALL)
def test_forward(name):
  variables, x, apply = _small_model(name)
  (logits, features), _ = apply(variables, x, False)
  assert logits.shape == (4, _num_classes(name)) and logits.dtype == jnp.float32
  assert features.shape == (4, feature_dim(name)) and features.dtype == jnp.float32
  assert np.isfinite(np.asarray(logits)).all()
  assert np.asarray(features).std() > 0
  # Eval is deterministic.
  (logits2, features2), _ = apply(variables, x, False)
  np.testing.assert_array_equal(np.asarray(logits), np.asarray(logits2))
  np.testing.assert_array_equal(np.asarray(features), np.asarray(features2))


@pytest.mark.parametrize("name", TRAIN_SMALL)
def test_train_and_eval_modes(name):
  variables, x, apply = _small_model(name)
  (eval_logits, _), _ = apply(variables, x, False)
  (train_logits, _), updates = apply(variables, x, True)
  if name == "mlp":  # no BatchNorm: the two modes compute the same function
    np.testing.assert_allclose(np.asarray(train_logits), np.asarray(eval_logits))
    assert "batch_stats" not in variables and not updates.get("batch_stats")
    return
  assert not np.allclose(np.asarray(train_logits), np.asarray(eval_logits), atol=1e-4)
  old = traverse_util.flatten_dict(variables["batch_stats"])
  new = traverse_util.flatten_dict(updates["batch_stats"])
  assert old.keys() == new.keys()
  for key in old:  # running <- 0.9 running + 0.1 batch statistic: every entry moves
    assert not np.allclose(old[key], new[key])


@pytest.fixture(scope="module")
def resnet8():
  """(model, variables from the real `init`) for resnet8 with 100 classes.

  The "rbg" PRNG compiles much faster on XLA:CPU than the default threefry; the
  initialisers' distributions do not depend on it.
  """
  model = create_model("resnet8", 100)
  variables = jax.jit(lambda k: model.init(k, jnp.zeros((1, 32, 32, 3))))(
      jax.random.key(0, impl="rbg"))
  return model, variables


def test_initialisation(resnet8):
  _, variables = resnet8
  params = traverse_util.flatten_dict(variables["params"])
  kernel = np.asarray(params[("layer3_0", "conv2", "kernel")])  # 3x3, 64 -> 64
  np.testing.assert_allclose(kernel.std(), np.sqrt(2.0 / (9 * 64)), rtol=0.03)
  assert abs(kernel.mean()) < 2e-3
  bn_keys = [k for k in params if k[-2].startswith("bn") or k[-2].endswith("bn")]
  assert len(bn_keys) == 2 * 9  # stem, 3 blocks x 2, 2 projections; scale and bias
  for key in bn_keys:
    np.testing.assert_array_equal(np.asarray(params[key]), 1.0 if key[-1] == "scale" else 0.0)
  for path, value in traverse_util.flatten_dict(variables["batch_stats"]).items():
    np.testing.assert_array_equal(np.asarray(value), 0.0 if path[-1] == "mean" else 1.0)
  bound = 1 / np.sqrt(64)  # PyTorch's default nn.Linear init: U(-bound, bound)
  for name in ("kernel", "bias"):
    value = np.asarray(params[("fc", name)])
    assert np.abs(value).max() <= bound and value.std() > bound / 3


@pytest.mark.parametrize("name", ["resnet8", "mlp", "small_cnn"])
def test_bfloat16_computation(name):
  x = jnp.asarray(_batch(name))
  f32 = create_model(name, _num_classes(name))
  bf16 = create_model(name, _num_classes(name), dtype=jnp.bfloat16)
  variables = _fake_variables(name)
  ref_logits, _ = jax.jit(f32.apply)(variables, x)
  lowered = jax.jit(bf16.apply).lower(variables, x.astype(jnp.bfloat16))
  # The computation itself runs in bfloat16.
  assert "bf16" in lowered.as_text()
  logits, features = lowered.compile()(variables, x.astype(jnp.bfloat16))
  assert logits.dtype == jnp.float32 and features.dtype == jnp.float32
  assert np.isfinite(np.asarray(logits)).all()
  scale = np.abs(np.asarray(ref_logits)).max()
  np.testing.assert_allclose(np.asarray(logits), np.asarray(ref_logits),
                             atol=0.05 * scale)


def test_sharded_batch_statistics_are_global():
  """Under jit with the batch split over 4 devices, BatchNorm uses the whole batch."""
  mesh = sharding.make_mesh(4)
  model = create_model("small_cnn", 10)
  x = jnp.asarray(_batch("small_cnn", batch=8))
  variables = _fake_variables("small_cnn")
  step = jax.jit(lambda v, x: model.apply(v, x, train=True, mutable=["batch_stats"]))
  (logits, _), stats = step(variables, x)
  (s_logits, _), s_stats = step(sharding.replicate(variables, mesh),
                                sharding.shard_batch(x, mesh))
  np.testing.assert_allclose(np.asarray(s_logits), np.asarray(logits), atol=1e-5)
  for a, b in zip(jax.tree_util.tree_leaves(s_stats), jax.tree_util.tree_leaves(stats)):
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=1e-6)


def test_mlp_and_small_cnn_options():
  assert feature_dim("mlp") == 256 and feature_dim("mlp", width=32) == 32
  assert feature_dim("small_cnn", width=8) == 16
  model = create_model("mlp", 10, width=32, depth=2)
  variables = _abstract_variables(model, jnp.zeros((1, 8, 8, 1)))
  assert _param_count(variables) == 64 * 32 + 32 + 32 * 32 + 32 + 32 * 10 + 10
  assert set(variables["params"]) == {"hidden0", "hidden1", "fc"}


# One model of each architecture class (every name is built by one of these).
ONE_PER_CLASS = ["resnet8", "resnet18", "wrn_16_2", "mobilenetv2", "shufflenetv2", "mlp",
                 "small_cnn"]


@pytest.mark.parametrize("name", ONE_PER_CLASS)
def test_every_model_takes_the_cosine_classifier(name):
  """classifier="cosine" swaps the head for NormedLinear (a kernel, no bias) and keeps
  the output shapes (abstract: no compilation)."""
  model = create_model(name, _num_classes(name), classifier="cosine")
  x = jnp.zeros((2, *input_shape(name)))
  variables = _abstract_variables(model, x)
  assert set(variables["params"]["fc"]) == {"kernel"}
  logits, _ = jax.eval_shape(lambda v: model.apply(v, x, train=False), variables)
  assert logits.shape == (2, _num_classes(name))


@pytest.mark.parametrize("name", ["mlp", "small_cnn"])
def test_cosine_classifier_outputs_cosines(name):
  """classifier="cosine" (LDAM-DRW's NormedLinear): logits are the cosines between the
  normalised features and the normalised class weights, |z| <= 1, no bias."""
  model = create_model(name, _num_classes(name), classifier="cosine")
  x = _batch(name, batch=4)
  variables = model.init(jax.random.key(0), x, train=False)
  logits, features = model.apply(variables, x, train=False)
  kernel = np.asarray(variables["params"]["fc"]["kernel"], np.float64)
  assert set(variables["params"]["fc"]) == {"kernel"}
  f = np.asarray(features, np.float64)
  expected = (f / np.linalg.norm(f, axis=1, keepdims=True)) @ (
      kernel / np.linalg.norm(kernel, axis=0, keepdims=True))
  np.testing.assert_allclose(logits, expected, rtol=1e-5, atol=1e-6)
  assert np.all(np.abs(np.asarray(logits)) <= 1 + 1e-6)
  # The reference's init: every class's weight column has unit norm.
  np.testing.assert_allclose(np.linalg.norm(kernel, axis=0), 1.0, rtol=1e-6)
  with pytest.raises(ValueError, match="classifier must be one of"):
    create_model(name, 10, classifier="arcface")


def test_ldam_on_cosine_logits_matches_the_reference():
  """LDAM-DRW's LDAMLoss on NormedLinear outputs, ported to numpy in float64: the
  margin m_y is subtracted from the true class's cosine before the scale s = 30, so
  it moves the decision boundary by a fixed angle the network cannot outgrow."""
  from krd_jax import losses, priors
  counts = np.array([500, 200, 80, 30, 10, 5, 3, 2, 2, 1])
  model = create_model("small_cnn", 10, classifier="cosine")
  x = _batch("small_cnn", batch=16, seed=3)
  variables = model.init(jax.random.key(1), x, train=False)
  cosines, features = model.apply(variables, x, train=False)
  labels = np.random.RandomState(0).randint(0, 10, 16)
  out = losses.ldam_loss(cosines, labels, priors.ldam_margins(counts), 30.0)
  f = np.asarray(features, np.float64)
  w = np.asarray(variables["params"]["fc"]["kernel"], np.float64)
  cos = (f / np.linalg.norm(f, axis=1, keepdims=True)) @ (w / np.linalg.norm(w, axis=0))
  margins = 1.0 / np.sqrt(np.sqrt(counts))
  margins = margins * (0.5 / margins.max())  # m_list * (max_m / max(m_list))
  z = 30.0 * (cos - np.eye(10)[labels] * margins[labels][:, None])
  z = z - z.max(1, keepdims=True)
  ref = -(z[np.arange(16), labels] - np.log(np.exp(z).sum(1)))
  np.testing.assert_allclose(out, ref, rtol=1e-5, atol=1e-5)
  # With the margin, an example whose true cosine leads by less than m_y is still
  # penalised as if it were wrong: the loss exceeds plain scaled CE on every row.
  plain = losses.cross_entropy(30.0 * cosines, labels)
  assert np.all(np.asarray(out) > np.asarray(plain))


def test_unknown_name_or_argument_raises():
  with pytest.raises(ValueError, match="resnet32x4"):
    create_model("resnet9000", 10)
  with pytest.raises(ValueError, match="unknown model"):
    feature_dim("vgg13")
  with pytest.raises(ValueError, match=r"\['classifier', 'depth', 'dtype', 'width'\]"):
    create_model("mlp", 10, widht=3)
  with pytest.raises(ValueError, match="dtype"):
    create_model("resnet8", 10, width=3)
  with pytest.raises(ValueError, match="positive int"):
    create_model("mlp", 10, depth=0)
  with pytest.raises(ValueError, match="num_classes"):
    create_model("resnet8", 0)
  with pytest.raises(ValueError, match="num_classes"):
    create_model("resnet8", 2.5)
  assert create_model("resnet8", np.int64(7)).num_classes == 7  # NumPy ints are fine


# --- Cross-check against the PyTorch definitions (only where torch is installed). ---


def _torch_reference():
  torch = pytest.importorskip(
      "torch", reason="PyTorch is not installed: these cross-checks run in CI, where "
      ".ci/run installs requirements-ci.txt (pip install -r requirements-ci.txt here)")
  spec = importlib.util.spec_from_file_location(
      "torch_reference", ROOT / "benchmarks" / "torch_reference.py")
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return torch, module


@pytest.mark.parametrize("name", ["resnet8", "resnet32", "resnet8x4", "resnet32x4"])
def test_param_count_matches_torch(name):
  _, reference = _torch_reference()
  assert _param_count(_abstract_variables_of(name)) == reference.param_count(name, 100)


def test_forward_matches_torch(resnet8):
  """resnet8 with the PyTorch weights ported computes the same logits and features."""
  torch, reference = _torch_reference()
  torch.manual_seed(0)
  torch_model = reference.create("resnet8", 100).eval()
  for m in torch_model.modules():
    if isinstance(m, torch.nn.BatchNorm2d):
      m.running_mean.uniform_(-0.5, 0.5)
      m.running_var.uniform_(0.5, 2.0)
  model, variables = resnet8
  x = _batch("resnet8")
  # Flax modules in the order torch registers their parameters and buffers.
  modules = [("conv1",), ("bn1",)]
  for stage in (1, 2, 3):
    block = f"layer{stage}_0"
    modules += [(block, m) for m in ("conv1", "bn1", "conv2", "bn2")]
    if stage > 1:
      modules += [(block, "downsample_conv"), (block, "downsample_bn")]
  modules.append(("fc",))
  names = {"conv": ["kernel"], "bn": ["scale", "bias"], "fc": ["kernel", "bias"]}
  flat = traverse_util.flatten_dict(variables["params"])
  keys = [m + (p,) for m in modules
          for p in names["bn" if m[-1].endswith("bn") or m[-1].startswith("bn")
                         else "fc" if m[-1] == "fc" else "conv"]]
  assert sorted(keys) == sorted(flat)
  ported = {}
  for key, tensor in zip(keys, torch_model.parameters(), strict=True):
    value = tensor.detach().numpy()
    value = value.transpose(2, 3, 1, 0) if value.ndim == 4 else value.T
    assert value.shape == flat[key].shape, key
    ported[key] = value
  bn_modules = [m for m in modules if m[-1].endswith("bn") or m[-1].startswith("bn")]
  stat_keys = [m + (s,) for m in bn_modules for s in ("mean", "var")]
  buffers = [b.numpy() for n, b in torch_model.named_buffers() if "running" in n]
  ported_stats = dict(zip(stat_keys, buffers, strict=True))
  assert ported_stats.keys() == traverse_util.flatten_dict(variables["batch_stats"]).keys()
  variables = {"params": traverse_util.unflatten_dict(ported),
               "batch_stats": traverse_util.unflatten_dict(ported_stats)}
  logits, features = jax.jit(model.apply)(variables, x)
  with torch.no_grad():
    torch_logits, torch_features = torch_model(torch.from_numpy(x.transpose(0, 3, 1, 2)))
  np.testing.assert_allclose(np.asarray(features), torch_features.numpy(), atol=1e-4)
  np.testing.assert_allclose(np.asarray(logits), torch_logits.numpy(), atol=1e-4)


def test_a_krd_jax_teacher_ported_to_torch_computes_the_same_logits(resnet8, tmp_path):
  """benchmarks/time_to_table.py hands PyTorch the krd_jax teacher's weights
  (torch_order), which torch_student.load_teacher reads: the same logits, BN statistics
  included."""
  torch, _ = _torch_reference()
  spec = importlib.util.spec_from_file_location(
      "time_to_table", ROOT / "benchmarks" / "time_to_table.py")
  time_to_table = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(time_to_table)
  import torch_student  # benchmarks/ is on the path now
  model, variables = resnet8
  r = np.random.RandomState(0)
  # Running statistics a trained net could have (means near 0, variances about 1, each
  # channel its own), so a mean swapped for a variance would show.
  stats = traverse_util.flatten_dict(variables["batch_stats"])
  stats = {k: (r.uniform(-0.2, 0.2, v.shape) if k[-1] == "mean" else
               r.uniform(0.3, 2.0, v.shape)).astype(np.float32) for k, v in stats.items()}
  variables = {"params": variables["params"],
               "batch_stats": traverse_util.unflatten_dict(stats)}
  np.savez(tmp_path / "teacher.npz", *time_to_table.torch_order(variables, 8))
  ported = torch_student.load_teacher(str(tmp_path / "teacher.npz"), "resnet8", 100)
  x = _batch("resnet8", batch=4)
  logits, features = jax.jit(model.apply)(variables, x)
  assert float(jnp.abs(features).max()) > 0.1  # the features reach the logits
  with torch.no_grad():
    torch_logits, torch_features = ported(torch.from_numpy(x.transpose(0, 3, 1, 2)))
  np.testing.assert_allclose(np.asarray(features), torch_features.numpy(), atol=1e-4)
  np.testing.assert_allclose(np.asarray(logits), torch_logits.numpy(), atol=1e-4)


# ----------------------------------------------------------------------------- FLOPs


def _cifar_resnet_macs(depth, filters, classes):
  """Multiply-adds of a CIFAR ResNet counted by hand from its definition (32x32 input,
  3x3 convolutions, a 1x1 projection where the width or stride changes)."""
  n = (depth - 2) // 6
  macs, size, width = 32 * 32 * filters[0] * 3 * 9, 32, filters[0]
  for stage, out in enumerate(filters[1:]):
    for i in range(n):
      stride = 2 if stage > 0 and i == 0 else 1
      size //= stride
      macs += size * size * out * width * 9 + size * size * out * out * 9
      if stride != 1 or width != out:
        macs += size * size * out * width
      width = out
  return macs + width * classes


@pytest.mark.parametrize("name, depth, filters", [
    ("resnet8", 8, (16, 16, 32, 64)), ("resnet32", 32, (16, 16, 32, 64)),
    ("resnet8x4", 8, (32, 64, 128, 256))])
def test_forward_flops_count_every_convolution_and_the_classifier(name, depth, filters):
  model = create_model(name, 100)
  assert flops.forward_flops(model, (32, 32, 3)) == 2 * _cifar_resnet_macs(depth, filters, 100)
  # The published order of magnitude: ResNet-8 about 12.5M multiply-adds on CIFAR-100.
  assert flops.forward_flops(create_model("resnet8", 100), (32, 32, 3)) == 25_014_784


def test_forward_flops_agree_with_xla_cpu_up_to_the_padding_taps():
  """XLA:CPU counts convolutions too (its GPU count does not), but only the taps that
  land on the image, not on the zero padding (a 3x3 kernel on 8x8: (22/24)^2 = 84% of
  the full count), and adds the element-wise work; the architecture count, like the
  literature's, counts every tap. For ResNet-8 XLA is 6% below."""
  model = create_model("resnet8", 10)
  x = jax.ShapeDtypeStruct((1, 32, 32, 3), jnp.float32)
  variables = jax.eval_shape(lambda x: model.init(jax.random.PRNGKey(0), x), x)
  cost = jax.jit(lambda v, x: model.apply(v, x)).lower(variables, x).cost_analysis()
  xla = (cost[0] if isinstance(cost, list) else cost)["flops"]
  ours = flops.forward_flops(model, (32, 32, 3))
  assert 0.9 * ours <= xla <= ours, (ours, xla)
  step = flops.distillation_step_flops(create_model("resnet32", 10), model, (32, 32, 3))
  assert step == flops.forward_flops(create_model("resnet32", 10), (32, 32, 3)) + 3 * ours


def _conv_grads_float64(x, kernel, dy, stride, pad):
  """Input and kernel gradients of y = conv(x, kernel) for upstream dy, by direct sums."""
  k = kernel.shape[0]
  xp = np.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0)))
  dxp, dk = np.zeros_like(xp), np.zeros_like(kernel)
  ho, wo = dy.shape[1:3]
  for i in range(k):
    for j in range(k):
      rows, cols = slice(i, i + stride * ho, stride), slice(j, j + stride * wo, stride)
      dk[i, j] = np.einsum("bhwc,bhwo->co", xp[:, rows, cols], dy)
      dxp[:, rows, cols] += np.einsum("bhwo,co->bhwc", dy, kernel[i, j])
  return dxp[:, pad:pad + x.shape[1], pad:pad + x.shape[2]], dk


@pytest.mark.parametrize("k, stride, cin, cout", [(3, 1, 3, 4), (3, 2, 4, 5), (1, 1, 4, 6),
                                                  (1, 2, 5, 3)])
def test_convolution_gradients_match_direct_sums(k, stride, cin, cout):
  """The layers' convolution gradients, compiled as the library's CPU steps are
  (steps.CPU_COMPILER_OPTIONS), against float64 sums, on an odd-sized map so the
  strided windows meet the far edge."""
  from krd_jax.train import steps as steps_lib
  rng = np.random.default_rng(k * 10 + stride)
  x, kernel = rng.normal(size=(2, 7, 7, cin)), rng.normal(size=(k, k, cin, cout))
  pad = k // 2
  ho = (7 + 2 * pad - k) // stride + 1
  dy = rng.normal(size=(2, ho, ho, cout))

  @functools.partial(jax.jit, compiler_options=steps_lib.CPU_COMPILER_OPTIONS)
  def grads(a, b, g):
    y, vjp = jax.vjp(lambda a, b: layers._conv(a, b, stride, pad, 1), a, b)  # pylint: disable=protected-access
    assert y.shape == g.shape
    return vjp(g)

  dx, dk = grads(jnp.float32(x), jnp.float32(kernel), jnp.float32(dy))
  dx_ref, dk_ref = _conv_grads_float64(x, kernel, dy, stride, pad)
  np.testing.assert_allclose(dx, dx_ref, rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(dk, dk_ref, rtol=1e-5, atol=1e-4)
