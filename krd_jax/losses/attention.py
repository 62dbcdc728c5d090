"""Attention transfer: the student's spatial attention maps matched to the teacher's.

Per-example, float32 [B]; reduce with `jnp.mean` (the batch mean is the authors' and
mdistiller's `.mean()` over batch and positions).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from krd_jax.losses import _common

Array = jax.Array
ArrayLike = _common.ArrayLike

__all__ = ["attention_map", "attention_transfer_loss"]


def attention_map(feature_map: ArrayLike, p: float = 2.0) -> Array:
  """The L2-normalised spatial attention of a stage map: mean over channels of A^p.

  Args:
    feature_map: [B, H, W, C] (NHWC), a stage's output (after its ReLU, so A^p is
      |A|^p as the paper writes it).
    p: the power.

  Returns:
    float32 [B, H * W], each row of unit norm (zero rows stay zero).
  """
  a = _common.as_f32(feature_map, "feature_map", rank=4)
  attention = jnp.mean(a ** p, axis=-1).reshape(a.shape[0], -1)
  return _common.l2_normalize(attention)


def attention_transfer_loss(student_map: ArrayLike, teacher_map: ArrayLike,
                            p: float = 2.0) -> Array:
  """One stage's attention-transfer term per example.

  Args:
    student_map: [B, H, W, C_s] student stage map.
    teacher_map: [B, H', W', C_t] teacher stage map; channels may differ, and the
      larger of the two spatial sizes is average-pooled to the smaller.
    p: the attention power (2 in the authors' CIFAR runs).

  Returns:
    float32 [B]: mean over positions of (Q_s - Q_t)^2, Q the normalised attention.

  References:
    Zagoruyko & Komodakis 2017, "Paying More Attention to Attention", ICLR, eq. (2)
    (here without the 1/2 and with the squared difference averaged over positions, as
    the authors' code and mdistiller's `AT.py` compute it).
  """
  s = _common.as_f32(student_map, "student_map", rank=4)
  t = _common.as_f32(teacher_map, "teacher_map", rank=4)
  if s.shape[0] != t.shape[0]:
    raise ValueError(f"student_map has batch {s.shape[0]}, teacher_map {t.shape[0]}")
  if s.shape[1] > t.shape[1]:
    s = _common.avg_pool_to(s, t.shape[1])
  elif t.shape[1] > s.shape[1]:
    t = _common.avg_pool_to(t, s.shape[1])
  return jnp.mean(jnp.square(attention_map(s, p) - attention_map(t, p)), axis=-1)
