"""MobileNetV2 for CIFAR as used in distillation benchmarks (CRD's `mobile_half`).

Inverted residual blocks (1x1 expand, 3x3 depthwise, linear 1x1 project; identity
shortcut when stride is 1 and width is unchanged) with Sandler et al.'s stage table,
expansion T = 6 and width multiplier 0.5, on 32x32 inputs. The CRD variant differs
from the ImageNet one: the stem is stride 2, the expansion 1x1 convolution is kept
even in the t = 1 first stage, the last 1x1 layer keeps 1280 channels for width
multipliers <= 1, there is no dropout, and the classifier starts from N(0, 0.01).

References:
  Sandler, Howard, Zhu, Zhmoginov, Chen. MobileNetV2: Inverted Residuals and Linear
    Bottlenecks. CVPR 2018.
  Tian, Krishnan, Isola. Contrastive Representation Distillation. ICLR 2020
    (`models/mobilenetv2.py`, `mobile_half`; also mdistiller's MobileNetV2).
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from krd_jax.models import layers

Dtype = layers.Dtype
ModuleDef = layers.ModuleDef

# (expansion t, channels c, repeats n, first stride s); t = None means `expansion`.
_STAGES = ((1, 16, 1, 1), (None, 24, 2, 1), (None, 32, 3, 2), (None, 64, 4, 2),
           (None, 96, 3, 1), (None, 160, 3, 2), (None, 320, 1, 1))


class InvertedResidual(nn.Module):
  """Expand (1x1) -> depthwise 3x3 -> project (1x1, linear), plus identity if possible.

  Attributes:
    features: output channels.
    strides: stride of the depthwise convolution.
    expansion: hidden width = expansion * input channels.
    norm: BatchNorm constructor.
    dtype: computation dtype.
  """
  features: int
  strides: int
  expansion: int
  norm: ModuleDef
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    hidden = x.shape[-1] * self.expansion
    y = layers.ConvBN(hidden, 1, self.norm, dtype=self.dtype, name="expand")(x)
    y = layers.ConvBN(hidden, 3, self.norm, self.strides, groups=hidden,
                      dtype=self.dtype, name="depthwise")(y)
    y = layers.ConvBN(self.features, 1, self.norm, relu=False, dtype=self.dtype,
                      name="project")(y)
    if self.strides == 1 and x.shape[-1] == self.features:
      y = x + y
    return y


class MobileNetV2(nn.Module):
  """CIFAR MobileNetV2; the defaults give CRD's `mobile_half`.

  Attributes:
    num_classes: number of logits.
    expansion: expansion ratio T of every stage but the first.
    width_mult: channel multiplier of the stem and the blocks.
    dtype: computation dtype (parameters stay float32).
    cosine_classifier: a cosine classifier (`layers.NormedLinear`) instead of a linear
      one.
  """
  num_classes: int
  expansion: int = 6
  width_mult: float = 0.5
  dtype: Dtype = jnp.float32
  cosine_classifier: bool = False

  @property
  def last_channels(self) -> int:
    """Width of the final 1x1 layer, i.e. of the returned features."""
    return int(1280 * self.width_mult) if self.width_mult > 1.0 else 1280

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> tuple[jax.Array, jax.Array]:
    """Returns (logits [B, num_classes], features [B, 1280]), both float32."""
    norm = layers.batch_norm(train, self.dtype)
    x = jnp.asarray(x, self.dtype)
    x = layers.ConvBN(int(32 * self.width_mult), 3, norm, 2, dtype=self.dtype,
                      name="stem")(x)
    for stage, (t, c, n, s) in enumerate(_STAGES):
      for i in range(n):
        x = InvertedResidual(
            int(c * self.width_mult), s if i == 0 else 1,
            self.expansion if t is None else t, norm, self.dtype,
            name=f"block{stage}_{i}")(x)
    x = layers.ConvBN(self.last_channels, 1, norm, dtype=self.dtype, name="head")(x)
    features = layers.global_avg_pool(x)
    logits = layers.classifier(
        self.num_classes, features.shape[-1], cosine=self.cosine_classifier,
        kernel_init=nn.initializers.normal(0.01),
        bias_init=nn.initializers.zeros)(features)
    return logits, features
