"""Wide Residual Networks for CIFAR (WRN-16-2, WRN-40-2), in the CRD variant.

Pre-activation basic blocks (BN-ReLU-conv twice) in three groups of n = (d - 4) / 6
blocks with widths 16k, 32k, 64k and strides 1, 2, 2 after a 16-channel 3x3 stem;
a 1x1 projection shortcut on the activated input where the width changes; final
BN-ReLU, global average pooling, linear classifier. No dropout (CRD trains with
dropRate 0), bias-free convolutions, classifier bias initialised to zero.

References:
  Zagoruyko, Komodakis. Wide Residual Networks. BMVC 2016.
  Tian, Krishnan, Isola. Contrastive Representation Distillation. ICLR 2020
    (`models/wrn.py`, the wrn_40_2 -> wrn_16_2 pair; also in mdistiller).
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from krd_jax.models import layers

Dtype = layers.Dtype
ModuleDef = layers.ModuleDef


class WideBasicBlock(nn.Module):
  """Pre-activation block: BN-ReLU-conv3x3-BN-ReLU-conv3x3 plus shortcut.

  Attributes:
    features: output channels.
    strides: stride of the first convolution and of the projection.
    norm: BatchNorm constructor.
    dtype: computation dtype.
  """
  features: int
  strides: int
  norm: ModuleDef
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    activated = nn.relu(self.norm(name="bn1")(x))
    y = layers.conv(self.features, 3, self.strides, dtype=self.dtype,
                    name="conv1")(activated)
    y = nn.relu(self.norm(name="bn2")(y))
    y = layers.conv(self.features, 3, dtype=self.dtype, name="conv2")(y)
    if x.shape[-1] == self.features:
      shortcut = x
    else:
      shortcut = layers.conv(self.features, 1, self.strides, dtype=self.dtype,
                             name="conv_shortcut")(activated)
    return shortcut + y


class WideResNet(nn.Module):
  """WRN-`depth`-`widen_factor` for 32x32 inputs.

  Attributes:
    depth: 6n + 4 (16, 22, 28, 40).
    widen_factor: width multiplier k of the three groups.
    num_classes: number of logits.
    dtype: computation dtype (parameters stay float32).
    cosine_classifier: a cosine classifier (`layers.NormedLinear`) instead of a linear
      one.
  """
  depth: int
  widen_factor: int
  num_classes: int
  dtype: Dtype = jnp.float32
  cosine_classifier: bool = False

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> tuple[jax.Array, jax.Array]:
    """Returns (logits [B, num_classes], features [B, 64 k]), both float32."""
    if (self.depth - 4) % 6:
      raise ValueError(f"depth must be 6n + 4, got {self.depth}")
    blocks_per_group = (self.depth - 4) // 6
    norm = layers.batch_norm(train, self.dtype)
    x = jnp.asarray(x, self.dtype)
    x = layers.conv(16, 3, dtype=self.dtype, name="conv1")(x)
    widths = [16 * self.widen_factor, 32 * self.widen_factor, 64 * self.widen_factor]
    for group, (width, stride) in enumerate(zip(widths, (1, 2, 2))):
      for i in range(blocks_per_group):
        x = WideBasicBlock(width, stride if i == 0 else 1, norm, self.dtype,
                           name=f"block{group + 1}_{i}")(x)
    x = nn.relu(norm(name="bn1")(x))
    features = layers.global_avg_pool(x)
    logits = layers.classifier(
        self.num_classes, features.shape[-1], cosine=self.cosine_classifier,
        bias_init=nn.initializers.zeros)(features)
    return logits, features
