"""ShuffleNetV2 (1x) for CIFAR, as mdistiller's / CRD's `ShuffleV2`.

Stages of a stride-2 down-sampling unit followed by basic units that split the
channels in two, transform one half (1x1, depthwise 3x3, 1x1) and concatenate it
back before a two-group channel shuffle. The CIFAR variant has a 1x1, 24-channel
stem without max-pooling, stage widths 116 / 232 / 464 with 3 / 7 / 3 basic units, a
1024-channel 1x1 layer, global average pooling and a linear classifier. The
reference sets no initialisers, so PyTorch's defaults are used throughout.

References:
  Ma, Zhang, Zheng, Sun. ShuffleNet V2: Practical Guidelines for Efficient CNN
    Architecture Design. ECCV 2018.
  Tian, Krishnan, Isola. Contrastive Representation Distillation. ICLR 2020
    (`models/ShuffleNetv2.py`; also mdistiller's `ShuffleV2`).
"""

from __future__ import annotations

import functools
from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from krd_jax.models import layers

Dtype = layers.Dtype
ModuleDef = layers.ModuleDef

# PyTorch-default convolution initialisation, as in the reference.
_ConvBN = functools.partial(layers.ConvBN, kernel_init=layers.torch_default_kernel)


def channel_shuffle(x: jax.Array, groups: int = 2) -> jax.Array:
  """[B, H, W, g * c] -> interleave the g groups (PyTorch's NCHW shuffle, in NHWC)."""
  b, h, w, channels = x.shape
  x = x.reshape(b, h, w, groups, channels // groups)
  return jnp.swapaxes(x, 3, 4).reshape(b, h, w, channels)


class ShuffleUnit(nn.Module):
  """Basic unit: keep the first half, transform the second, concatenate, shuffle.

  Attributes:
    norm: BatchNorm constructor.
    dtype: computation dtype.
  """
  norm: ModuleDef
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    half = x.shape[-1] // 2
    x1, x2 = x[..., :half], x[..., half:]
    width = x2.shape[-1]
    y = _ConvBN(width, 1, self.norm, dtype=self.dtype, name="pw1")(x2)
    y = _ConvBN(width, 3, self.norm, groups=width, relu=False, dtype=self.dtype,
                name="dw")(y)
    y = _ConvBN(width, 1, self.norm, dtype=self.dtype, name="pw2")(y)
    return channel_shuffle(jnp.concatenate([x1, y], axis=-1))


class DownUnit(nn.Module):
  """Stride-2 unit: two branches of `features // 2` channels, concatenate, shuffle.

  Attributes:
    features: output channels.
    norm: BatchNorm constructor.
    dtype: computation dtype.
  """
  features: int
  norm: ModuleDef
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    mid = self.features // 2
    cin = x.shape[-1]
    left = _ConvBN(cin, 3, self.norm, 2, groups=cin, relu=False, dtype=self.dtype,
                   name="left_dw")(x)
    left = _ConvBN(mid, 1, self.norm, dtype=self.dtype, name="left_pw")(left)
    right = _ConvBN(mid, 1, self.norm, dtype=self.dtype, name="right_pw1")(x)
    right = _ConvBN(mid, 3, self.norm, 2, groups=mid, relu=False, dtype=self.dtype,
                    name="right_dw")(right)
    right = _ConvBN(mid, 1, self.norm, dtype=self.dtype, name="right_pw2")(right)
    return channel_shuffle(jnp.concatenate([left, right], axis=-1))


class ShuffleNetV2(nn.Module):
  """CIFAR ShuffleNetV2; the defaults give the 1x network (`ShuffleV2`).

  Attributes:
    num_classes: number of logits.
    stage_widths: output channels of the three stages.
    stage_units: basic units after each stage's down-sampling unit.
    last_channels: width of the final 1x1 layer (the features).
    dtype: computation dtype (parameters stay float32).
    cosine_classifier: a cosine classifier (`layers.NormedLinear`) instead of a linear
      one.
  """
  num_classes: int
  stage_widths: Sequence[int] = (116, 232, 464)
  stage_units: Sequence[int] = (3, 7, 3)
  last_channels: int = 1024
  dtype: Dtype = jnp.float32
  cosine_classifier: bool = False

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> tuple[jax.Array, jax.Array]:
    """Returns (logits [B, num_classes], features [B, last_channels]), float32."""
    norm = layers.batch_norm(train, self.dtype)
    x = jnp.asarray(x, self.dtype)
    x = _ConvBN(24, 1, norm, dtype=self.dtype, name="stem")(x)
    for stage, (width, units) in enumerate(zip(self.stage_widths, self.stage_units)):
      x = DownUnit(width, norm, self.dtype, name=f"layer{stage + 1}_down")(x)
      for i in range(units):
        x = ShuffleUnit(norm, self.dtype, name=f"layer{stage + 1}_{i}")(x)
    x = _ConvBN(self.last_channels, 1, norm, dtype=self.dtype, name="head")(x)
    features = layers.global_avg_pool(x)
    logits = layers.classifier(self.num_classes, features.shape[-1],
                               cosine=self.cosine_classifier)(features)
    return logits, features
