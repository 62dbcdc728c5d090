"""Shared input checks and small numerics for the loss modules (private).

Checks run at trace time (on static shapes and dtypes only), so they cost
nothing inside jit and fail before any computation with a message that names
the offending argument.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import optax

Array = jax.Array
ArrayLike = Any

# Below this squared norm a vector is treated as zero when normalising, so the
# gradient stays finite at h = 0.
_NORM_EPS = 1e-12


def as_f32(x: ArrayLike, name: str, rank: int | None = None) -> Array:
  """Casts a float input to float32 (bf16 included) after checking its rank."""
  x = jnp.asarray(x)
  check_rank(x, rank, name)
  if not jnp.issubdtype(x.dtype, jnp.floating):
    raise ValueError(f"{name} must be a floating-point array; got dtype "
                     f"{x.dtype}")
  return x.astype(jnp.float32)


def check_rank(x: Array, rank: int | None, name: str) -> None:
  if rank is not None and x.ndim != rank:
    raise ValueError(f"{name} must have rank {rank}; got shape {x.shape}")


def check_labels(labels: ArrayLike, batch: int, name: str = "labels") -> Array:
  """Labels must be integer [B] matching the logits' batch size."""
  labels = jnp.asarray(labels)
  if labels.ndim != 1:
    raise ValueError(f"{name} must have rank 1 [batch]; got shape "
                     f"{labels.shape}")
  if not jnp.issubdtype(labels.dtype, jnp.integer):
    raise ValueError(f"{name} must be integer class indices; got dtype "
                     f"{labels.dtype}")
  if labels.shape[0] != batch:
    raise ValueError(f"{name} has batch size {labels.shape[0]} but the logits "
                     f"have {batch}")
  return labels


def logits_and_labels(logits: ArrayLike, labels: ArrayLike,
                      name: str = "logits") -> tuple[Array, Array]:
  """float32 logits [B, C] and integer labels [B], shape-checked."""
  logits = as_f32(logits, name, rank=2)
  return logits, check_labels(labels, logits.shape[0])


def like(x: ArrayLike, ref: Array, name: str, ref_name: str) -> Array:
  """float32 `x`, which must have exactly `ref`'s shape."""
  x = as_f32(x, name)
  if x.shape != ref.shape:
    raise ValueError(f"{name} has shape {x.shape} but {ref_name} has shape "
                     f"{ref.shape}; they must match")
  return x


def per_class(v: ArrayLike, num_classes: int, name: str) -> Array:
  """float32 per-class vector [C]."""
  v = as_f32(v, name, rank=1)
  if v.shape[0] != num_classes:
    raise ValueError(f"{name} has {v.shape[0]} entries but the logits have "
                     f"{num_classes} classes")
  return v


def l2_normalize(x: Array, axis: int = -1) -> Array:
  """x / ||x||, with a floor on the norm so that zero rows stay finite."""
  sq = jnp.sum(jnp.square(x), axis=axis, keepdims=True)
  return x * jax.lax.rsqrt(jnp.maximum(sq, _NORM_EPS))


def tempered_kl(student_logits: Array, teacher_logits: Array,
                temperature: float) -> Array:
  """T^2 KL(softmax(t/T) || softmax(s/T)) per row, float32 inputs."""
  log_p_s = jax.nn.log_softmax(student_logits / temperature, axis=-1)
  log_p_t = jax.nn.log_softmax(teacher_logits / temperature, axis=-1)
  return temperature**2 * optax.losses.kl_divergence_with_log_targets(
      log_p_s, log_p_t)


def check_temperature(temperature: float) -> None:
  """Temperatures are static Python numbers; reject non-positive ones early."""
  if isinstance(temperature, (int, float)) and temperature <= 0:
    raise ValueError(f"temperature must be > 0; got {temperature}")


def avg_pool_to(a: Array, size: int) -> Array:
  """Average-pools [B, H, W, C] to [B, size, size, C] (H and W multiples of size), as
  PyTorch's adaptive_avg_pool2d does for such sizes."""
  b, h, w, c = a.shape
  if h % size or w % size:
    raise ValueError(f"stage maps of {h}x{w} and {size}x{size}: the larger side must be a "
                     "multiple of the smaller")
  return a.reshape(b, size, h // size, size, w // size, c).mean(axis=(2, 4))
