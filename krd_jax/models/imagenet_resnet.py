"""ImageNet ResNets (ResNet-18, ResNet-50) exactly as torchvision defines them.

A 7x7 stride-2 stem and 3x3 stride-2 max-pool, four stages of widths 64 / 128 /
256 / 512 (times 4 for bottlenecks) with strides 1, 2, 2, 2, projection shortcuts,
global average pooling and a linear classifier, for 224-px inputs (any size that
survives a 32x reduction works). Bottlenecks put the stride on the 3x3 convolution
("ResNet v1.5", torchvision's choice). Parameter counts equal torchvision's:
11,689,512 (ResNet-18) and 25,557,032 (ResNet-50) with 1000 classes.

References:
  He, Zhang, Ren, Sun. Deep Residual Learning for Image Recognition. CVPR 2016.
  torchvision.models.resnet (the v1.5 bottleneck and the initialisation).
"""

from __future__ import annotations

from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from krd_jax.models import layers

Dtype = layers.Dtype
ModuleDef = layers.ModuleDef


class Bottleneck(nn.Module):
  """1x1 reduce -> 3x3 (strided) -> 1x1 expand to 4 x `features`, plus shortcut.

  Attributes:
    features: bottleneck width; the block outputs 4 x features channels.
    strides: stride of the 3x3 convolution and of the projection.
    norm: BatchNorm constructor.
    dtype: computation dtype.
  """
  features: int
  strides: int
  norm: ModuleDef
  dtype: Dtype = jnp.float32

  expansion = 4

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    out_features = self.features * self.expansion
    y = layers.conv(self.features, 1, dtype=self.dtype, name="conv1")(x)
    y = nn.relu(self.norm(name="bn1")(y))
    y = layers.conv(self.features, 3, self.strides, dtype=self.dtype, name="conv2")(y)
    y = nn.relu(self.norm(name="bn2")(y))
    y = layers.conv(out_features, 1, dtype=self.dtype, name="conv3")(y)
    y = self.norm(name="bn3")(y)
    shortcut = x
    if self.strides != 1 or x.shape[-1] != out_features:
      shortcut = layers.conv(
          out_features, 1, self.strides, dtype=self.dtype, name="downsample_conv")(x)
      shortcut = self.norm(name="downsample_bn")(shortcut)
    return nn.relu(y + shortcut)


class ImageNetResNet(nn.Module):
  """torchvision-style ResNet.

  Attributes:
    stage_sizes: blocks per stage, e.g. (2, 2, 2, 2) for ResNet-18.
    block: `cifar_resnet.BasicBlock` or `Bottleneck`.
    num_classes: number of logits.
    dtype: computation dtype (parameters stay float32).
    cosine_classifier: a cosine classifier (`layers.NormedLinear`) instead of a linear
      one.
  """
  stage_sizes: Sequence[int]
  block: type[nn.Module]
  num_classes: int
  dtype: Dtype = jnp.float32
  cosine_classifier: bool = False

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> tuple[jax.Array, jax.Array]:
    """Returns (logits [B, num_classes], features [B, 512 or 2048]), both float32."""
    norm = layers.batch_norm(train, self.dtype)
    x = jnp.asarray(x, self.dtype)
    x = layers.conv(64, 7, 2, dtype=self.dtype, name="conv1")(x)
    x = nn.relu(norm(name="bn1")(x))
    x = nn.max_pool(x, (3, 3), strides=(2, 2), padding=((1, 1), (1, 1)))
    for stage, num_blocks in enumerate(self.stage_sizes):
      for i in range(num_blocks):
        strides = 2 if stage > 0 and i == 0 else 1
        x = self.block(64 * 2**stage, strides, norm, self.dtype,
                       name=f"layer{stage + 1}_{i}")(x)
    features = layers.global_avg_pool(x)
    logits = layers.classifier(self.num_classes, features.shape[-1],
                               cosine=self.cosine_classifier)(features)
    return logits, features

