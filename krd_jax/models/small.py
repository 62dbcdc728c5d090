"""Small models for 8x8 digits (scikit-learn's `load_digits`): an MLP and a CNN.

These have no published reference; they size the CPU demo. The MLP matches the
teacher / student of the digits_lt demo (256-wide teacher,
32-wide student, one hidden layer). Dense layers use PyTorch's `nn.Linear`
initialisation like the rest of the zoo.

References:
  Rumelhart, Hinton, Williams. Learning Representations by Back-Propagating
    Errors. Nature 1986 (the multi-layer perceptron).
  LeCun, Bottou, Bengio, Haffner. Gradient-Based Learning Applied to Document
    Recognition. Proc. IEEE 1998 (small convolutional networks for digits).
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from krd_jax.models import layers

Dtype = layers.Dtype


class MLP(nn.Module):
  """Flatten -> `depth` x (Dense(width) -> ReLU) -> linear classifier.

  Attributes:
    num_classes: number of logits.
    width: hidden width, also the feature dimension.
    depth: number of hidden layers (>= 1).
    dtype: computation dtype (parameters stay float32).
    cosine_classifier: a cosine classifier (`layers.NormedLinear`) instead of a linear
      one.
  """
  num_classes: int
  width: int = 256
  depth: int = 1
  dtype: Dtype = jnp.float32
  cosine_classifier: bool = False

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> tuple[jax.Array, jax.Array]:
    """Returns (logits [B, num_classes], features [B, width]), both float32.

    `train` is accepted for a uniform interface; the MLP has no BatchNorm or
    dropout, so both modes compute the same function.
    """
    del train
    if self.depth < 1:
      raise ValueError(f"depth must be >= 1, got {self.depth}")
    x = jnp.asarray(x, self.dtype).reshape(x.shape[0], -1)
    for i in range(self.depth):
      x = nn.relu(nn.Dense(
          self.width, dtype=self.dtype, param_dtype=jnp.float32,
          kernel_init=layers.torch_default_kernel,
          bias_init=layers.torch_default_bias(x.shape[-1]), name=f"hidden{i}")(x))
    features = x.astype(jnp.float32)
    logits = layers.classifier(self.num_classes, self.width,
                               cosine=self.cosine_classifier)(features)
    return logits, features


class SmallCNN(nn.Module):
  """Three 3x3 conv-BN-ReLU layers (width, 2 width stride 2, 2 width), pooled.

  On 8x8 inputs the feature map goes 8x8 -> 4x4 -> 4x4 before global average
  pooling.

  Attributes:
    num_classes: number of logits.
    width: channels of the first layer; the features have 2 x width.
    dtype: computation dtype (parameters stay float32).
    cosine_classifier: a cosine classifier (`layers.NormedLinear`) instead of a linear
      one.
  """
  num_classes: int
  width: int = 32
  dtype: Dtype = jnp.float32
  cosine_classifier: bool = False

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> tuple[jax.Array, jax.Array]:
    """Returns (logits [B, num_classes], features [B, 2 width]), both float32; sows each
    layer's output as "stage1" ... "stage3"."""
    norm = layers.batch_norm(train, self.dtype)
    x = jnp.asarray(x, self.dtype)
    for i, (width, stride) in enumerate(((self.width, 1), (2 * self.width, 2),
                                         (2 * self.width, 1))):
      x = layers.ConvBN(width, 3, norm, stride, dtype=self.dtype, name=f"conv{i + 1}")(x)
      layers.sow_stage(self, f"stage{i + 1}", x)  # each layer's output, for AT-style tests
    features = layers.global_avg_pool(x)
    logits = layers.classifier(self.num_classes, features.shape[-1],
                               cosine=self.cosine_classifier)(features)
    return logits, features
