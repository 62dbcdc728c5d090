"""CIFAR ResNets of the CRD / mdistiller model zoo (resnet8 ... resnet110, x4).

Three stages of 6n + 2 layers of basic blocks on 32x32 inputs, as in He et al.'s
CIFAR experiments, in the exact variant the distillation literature benchmarks on
(CRD's `models/resnet.py`, copied into mdistiller): a 3x3 stem of `filters[0]`
channels, stages of `filters[1:]` channels with strides 1, 2, 2, projection
shortcuts (1x1 conv + BN) wherever shape changes, global average pooling and a
linear classifier. `resnetN` uses filters (16, 16, 32, 64); `resnetNx4`
uses (32, 64, 128, 256), so its first stage already needs a projection.

References:
  He, Zhang, Ren, Sun. Deep Residual Learning for Image Recognition. CVPR 2016.
  Tian, Krishnan, Isola. Contrastive Representation Distillation. ICLR 2020
    (the resnet8x4 / resnet32x4 teacher-student pair).
  Zhao, Cui, Song, Qiu, Liang. Decoupled Knowledge Distillation. CVPR 2022
    (mdistiller, whose `models/cifar/resnet.py` these reproduce).
"""

from __future__ import annotations

from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from krd_jax.models import layers

Dtype = layers.Dtype
ModuleDef = layers.ModuleDef


class BasicBlock(nn.Module):
  """Two 3x3 conv-BN layers plus a shortcut (projection when the shape changes).

  Shared by the CIFAR and the torchvision ImageNet ResNets (identical blocks).

  Attributes:
    features: output channels.
    strides: stride of the first convolution and of the projection.
    norm: BatchNorm constructor (carries train mode and dtype).
    dtype: computation dtype.
  """
  features: int
  strides: int
  norm: ModuleDef
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, return_preact: bool = False):
    """The block's output; with `return_preact`, (output, its pre-ReLU sum)."""
    y = layers.conv(self.features, 3, self.strides, dtype=self.dtype, name="conv1")(x)
    y = nn.relu(self.norm(name="bn1")(y))
    y = layers.conv(self.features, 3, dtype=self.dtype, name="conv2")(y)
    y = self.norm(name="bn2")(y)
    shortcut = x
    if self.strides != 1 or x.shape[-1] != self.features:
      shortcut = layers.conv(
          self.features, 1, self.strides, dtype=self.dtype, name="downsample_conv")(x)
      shortcut = self.norm(name="downsample_bn")(shortcut)
    out = nn.relu(y + shortcut)
    return (out, y + shortcut) if return_preact else out


class CifarResNet(nn.Module):
  """A CIFAR ResNet of `depth` = 6n + 2 layers.

  Attributes:
    depth: total depth, 6n + 2 (8, 14, 20, 32, 44, 56, 110).
    filters: stem width then the three stage widths.
    num_classes: number of logits.
    dtype: computation dtype (parameters stay float32).
    cosine_classifier: a cosine classifier (`layers.NormedLinear`) instead of a linear
      one.
  """
  depth: int
  filters: Sequence[int]
  num_classes: int
  dtype: Dtype = jnp.float32
  cosine_classifier: bool = False

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> tuple[jax.Array, jax.Array]:
    """Returns (logits [B, num_classes], features [B, filters[3]]), both float32; sows
    each stage's output "stage1" ... "stage3" (and its pre-ReLU sum, "stageK_preact",
    which ReviewKD reads of the teacher, as mdistiller's `preact_feats`)."""
    if (self.depth - 2) % 6:
      raise ValueError(f"depth must be 6n + 2, got {self.depth}")
    blocks_per_stage = (self.depth - 2) // 6
    norm = layers.batch_norm(train, self.dtype)
    x = jnp.asarray(x, self.dtype)
    x = layers.conv(self.filters[0], 3, dtype=self.dtype, name="conv1")(x)
    x = nn.relu(norm(name="bn1")(x))
    for stage, (width, stride) in enumerate(zip(self.filters[1:], (1, 2, 2))):
      for i in range(blocks_per_stage):
        block = BasicBlock(width, stride if i == 0 else 1, norm, self.dtype,
                           name=f"layer{stage + 1}_{i}")
        if i < blocks_per_stage - 1:
          x = block(x)
        else:
          x, preact = block(x, return_preact=True)
          layers.sow_stage(self, f"stage{stage + 1}", x, preact)
    features = layers.global_avg_pool(x)
    logits = layers.classifier(self.num_classes, features.shape[-1],
                               cosine=self.cosine_classifier)(features)
    return logits, features
