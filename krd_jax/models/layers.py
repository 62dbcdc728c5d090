"""Building blocks shared by the model zoo: PyTorch-matching convolutions and heads.

Every model in `krd_jax.models` mirrors a PyTorch reference definition (CRD /
mdistiller for CIFAR, torchvision for ImageNet), so the helpers here reproduce
PyTorch's conventions in Flax Linen: symmetric explicit padding (`padding=k // 2`,
not XLA's `SAME`, which pads strided convolutions asymmetrically), bias-free
convolutions before BatchNorm, PyTorch's BatchNorm hyper-parameters and PyTorch's
initialisers.

Data layout is NHWC. Parameters are float32; computation runs in the module's
`dtype`; pooled features and logits always come back in float32.
"""

from __future__ import annotations

import functools
from typing import Any, Callable

import flax.linen as nn
import jax
import jax.numpy as jnp

ModuleDef = Any
Dtype = Any
Initializer = Callable[..., jax.Array]

# `nn.init.kaiming_normal_(w, mode="fan_out", nonlinearity="relu")`, also the
# `normal_(0, sqrt(2 / (k * k * out_channels)))` of the CRD WRN / MobileNetV2 code.
# PyTorch's fan_out ignores groups (out_channels * k * k), as does JAX's.
kaiming_fan_out: Initializer = nn.initializers.variance_scaling(
    2.0, "fan_out", "normal")

# PyTorch's default for `nn.Linear.weight` and `nn.Conv2d.weight`
# (`kaiming_uniform_(a=sqrt(5))`): U(-1/sqrt(fan_in), 1/sqrt(fan_in)).
torch_default_kernel: Initializer = nn.initializers.variance_scaling(
    1.0 / 3.0, "fan_in", "uniform")


def torch_default_bias(fan_in: int) -> Initializer:
  """PyTorch's default bias initialiser: U(-1/sqrt(fan_in), 1/sqrt(fan_in))."""
  bound = 1.0 / float(fan_in) ** 0.5

  def init(key: jax.Array, shape: tuple[int, ...], dtype: Dtype = jnp.float32):
    return jax.random.uniform(key, shape, dtype, -bound, bound)

  return init


def _conv(x: jax.Array, kernel: jax.Array, strides: int, pad: int, groups: int) -> jax.Array:
  return jax.lax.conv_general_dilated(
      x, kernel, (strides, strides), ((pad, pad), (pad, pad)),
      dimension_numbers=("NHWC", "HWIO", "NHWC"), feature_group_count=groups)


class Conv(nn.Module):
  """A bias-free square convolution padded like PyTorch (`padding=k // 2`).

  The same parameter (`kernel`, [k, k, Cin / groups, Cout]), initialisation and
  computation as `nn.Conv(..., use_bias=False, padding=((p, p), (p, p)))`. Gradients
  are XLA's own on every backend: on CPU, compiled with the library's options (XLA's
  own convolution emitter, `train.steps.CPU_COMPILER_OPTIONS`), its kernel gradient made
  the whole step 1.03-1.28x faster than the patch-matrix product this layer used to
  compute instead (RESULTS.md; the retired script:
  git show 177365d:benchmarks/conv_grad_variants.py).
  """
  features: int
  kernel_size: int
  strides: int = 1
  groups: int = 1
  dtype: Dtype = jnp.float32
  kernel_init: Initializer = kaiming_fan_out

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    k = self.kernel_size
    kernel = self.param("kernel", self.kernel_init,
                        (k, k, x.shape[-1] // self.groups, self.features), jnp.float32)
    x, kernel = nn.dtypes.promote_dtype(x, kernel, dtype=self.dtype)
    return _conv(x, kernel, self.strides, k // 2, self.groups)


def conv(
    features: int,
    kernel_size: int,
    strides: int = 1,
    groups: int = 1,
    *,
    dtype: Dtype = jnp.float32,
    kernel_init: Initializer = kaiming_fan_out,
    name: str | None = None,
) -> Conv:
  """A bias-free square convolution padded like PyTorch (`padding=k // 2`)."""
  return Conv(features, kernel_size, strides, groups, dtype=dtype,
              kernel_init=kernel_init, name=name)


def batch_norm(train: bool, dtype: Dtype = jnp.float32) -> ModuleDef:
  """`nn.BatchNorm` with PyTorch's defaults (momentum 0.1 there = 0.9 here).

  Statistics live in the `batch_stats` collection. No `axis_name`: under `jax.jit`
  with a sharded batch the batch statistics are already global.
  """
  return functools.partial(
      nn.BatchNorm,
      use_running_average=not train,
      momentum=0.9,
      epsilon=1e-5,
      dtype=dtype,
      param_dtype=jnp.float32,
      scale_init=nn.initializers.ones,
      bias_init=nn.initializers.zeros,
  )


def global_avg_pool(x: jax.Array) -> jax.Array:
  """[B, H, W, C] -> [B, C] in float32 (the penultimate `features`)."""
  return jnp.mean(x.astype(jnp.float32), axis=(1, 2))


class NormedLinear(nn.Module):
  """Cosine classifier: the cosine between the normalised features and each class's
  normalised weight vector, in [-1, 1], no bias (LDAM-DRW's `NormedLinear`; LDAM
  scales these by s = 30 in its loss).

  Attributes:
    num_classes: number of outputs.
  """
  num_classes: int

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    # The reference draws U(-1, 1) and renormalises each class's column to norm 1.
    def init(key, shape, dtype=jnp.float32):
      w = jax.random.uniform(key, shape, dtype, -1.0, 1.0)
      return w / jnp.linalg.norm(w, axis=0, keepdims=True)

    kernel = self.param("kernel", init, (x.shape[-1], self.num_classes))
    x = x.astype(jnp.float32)
    x = x * jax.lax.rsqrt(jnp.maximum(jnp.sum(x * x, -1, keepdims=True), 1e-24))
    kernel = kernel * jax.lax.rsqrt(
        jnp.maximum(jnp.sum(kernel * kernel, 0, keepdims=True), 1e-24))
    return x @ kernel


def classifier(
    num_classes: int,
    fan_in: int,
    *,
    kernel_init: Initializer = torch_default_kernel,
    bias_init: Initializer | None = None,
    cosine: bool = False,
    name: str = "fc",
) -> nn.Module:
  """The final layer; it runs in float32 (apply it to float32 features).

  Args:
    num_classes: number of output logits.
    fan_in: input width (the feature dimension), for PyTorch's default bias init.
    kernel_init: weight initialiser; PyTorch's `nn.Linear` default unless the
      reference overrides it.
    bias_init: bias initialiser; None means PyTorch's default.
    cosine: a `NormedLinear` cosine classifier instead (the initialisers are then
      the reference's own).
    name: the submodule name.

  Returns:
    An `nn.Dense` (or `NormedLinear`) with float32 computation and parameters.
  """
  if cosine:
    return NormedLinear(num_classes, name=name)
  return nn.Dense(
      num_classes,
      dtype=jnp.float32,
      param_dtype=jnp.float32,
      kernel_init=kernel_init,
      bias_init=bias_init or torch_default_bias(fan_in),
      name=name,
  )


class ConvBN(nn.Module):
  """Convolution -> BatchNorm -> optional ReLU (the `conv_bn` of the references).

  Attributes:
    features: output channels.
    kernel_size: square kernel size.
    norm: BatchNorm constructor (carries train mode and dtype).
    strides: stride.
    groups: feature groups; `groups == in_channels` is a depthwise convolution.
    relu: whether to end with a ReLU.
    dtype: computation dtype.
    kernel_init: convolution weight initialiser.
  """
  features: int
  kernel_size: int
  norm: ModuleDef
  strides: int = 1
  groups: int = 1
  relu: bool = True
  dtype: Dtype = jnp.float32
  kernel_init: Initializer = kaiming_fan_out

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    x = conv(self.features, self.kernel_size, self.strides, self.groups,
             dtype=self.dtype, kernel_init=self.kernel_init, name="conv")(x)
    x = self.norm(name="bn")(x)
    return nn.relu(x) if self.relu else x


# The collection stage maps are sown into (read by krd_jax.train.steps where a method asks).
STAGES = "intermediates"


def sow_stage(module: nn.Module, name: str, output: jax.Array,
              preact: jax.Array | None = None) -> None:
  """Offers a stage's output map as `name` (and its pre-activation as `name + "_preact"`)
  in the "intermediates" collection, in float32: free unless the caller makes that
  collection mutable (`model.apply(..., mutable=["intermediates"])`)."""
  module.sow(STAGES, name, output.astype(jnp.float32))
  if preact is not None:
    module.sow(STAGES, f"{name}_preact", preact.astype(jnp.float32))
