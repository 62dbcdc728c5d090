"""On-device augmentation and normalisation, pure JAX: call them inside the jitted step.

Per-example randomness comes from keys split off the step's rng, so an example's
augmentation depends on (rng, its position in the global batch) and not on how the
batch is sharded over devices.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def augment(images: jax.Array, rng: jax.Array, pad: int = 4, flip: bool = True) -> jax.Array:
  """Random crop after zero padding, and random horizontal flip (the CIFAR recipe).

  Args:
    images: uint8 [B, H, W, C].
    rng: a PRNG key; one key per example is split from it.
    pad: pixels of zero padding on each side before the random H x W crop; 0 turns
      cropping off.
    flip: flip each image left-right with probability 1/2. Turn it off where a
      mirrored image is another class (digits).

  Returns:
    uint8 [B, H, W, C] (the input dtype is kept).

  References:
    He et al., "Deep Residual Learning for Image Recognition", CVPR 2016, 4.2.
  """
  if pad < 0:
    raise ValueError(f"pad must be >= 0, got {pad}")
  _, height, width, channels = images.shape
  keys = jax.random.split(rng, images.shape[0])

  def one(image, key):
    crop_key, flip_key = jax.random.split(key)
    if pad:
      padded = jnp.pad(image, ((pad, pad), (pad, pad), (0, 0)))
      dy, dx = jax.random.randint(crop_key, (2,), 0, 2 * pad + 1)
      image = jax.lax.dynamic_slice(padded, (dy, dx, 0), (height, width, channels))
    if flip:
      image = jnp.where(jax.random.bernoulli(flip_key), image[:, ::-1], image)
    return image

  return jax.vmap(one)(images, keys)


def normalize(images: jax.Array, mean, std) -> jax.Array:
  """(images / 255 - mean) / std per channel, as float32.

  Args:
    images: uint8 [..., C].
    mean: [C] channel means in [0, 1] units (`LongTailDataset.mean`).
    std: [C] channel standard deviations in [0, 1] units.

  Returns:
    float32 array of the shape of `images`.
  """
  mean = jnp.asarray(mean, jnp.float32)
  std = jnp.asarray(std, jnp.float32)
  return (images.astype(jnp.float32) / 255.0 - mean) / std
