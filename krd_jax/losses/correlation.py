"""DIST: relations of softened predictions (Pearson correlation) instead of their exact
match, across classes per example and across the batch per class.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from krd_jax.losses import _common

Array = jax.Array
ArrayLike = _common.ArrayLike

__all__ = ["dist_loss", "pearson_correlation"]


def pearson_correlation(a: Array, b: Array, eps: float = 1e-8) -> Array:
  """Row-wise Pearson correlation of two [N, M] arrays: [N] (eps in the denominator, as
  the authors' `cosine_similarity` of the centred rows has it)."""
  a = a - jnp.mean(a, axis=1, keepdims=True)
  b = b - jnp.mean(b, axis=1, keepdims=True)
  norms = jnp.linalg.norm(a, axis=1) * jnp.linalg.norm(b, axis=1)
  return jnp.sum(a * b, axis=1) / (norms + eps)


def dist_loss(student_logits: ArrayLike, teacher_logits: ArrayLike,
              temperature: float = 4.0, inter_weight: float = 1.0,
              intra_weight: float = 1.0) -> tuple[Array, Array]:
  """DIST's two relation terms of softmax(z / T), each times T^2.

  Args:
    student_logits, teacher_logits: [B, C].
    temperature: T.
    inter_weight: beta, the inter-class term's weight (per example, across classes).
    intra_weight: gamma, the intra-class term's weight (per class, across the batch).

  Returns:
    (inter [B], intra [C]), float32, already weighted: inter_b = beta T^2 (1 -
    rho(y_s[b], y_t[b])), intra_c = gamma T^2 (1 - rho(y_s[:, c], y_t[:, c])). The
    authors' loss is mean(inter) + mean(intra). On long-tailed data a batch holds few
    or no examples of a tail class, so its intra-class column is mostly other classes'
    mass.

  References:
    Huang, You, Wang, Qian, Xu 2022, "Knowledge Distillation from A Stronger Teacher",
    NeurIPS, eq. (5)-(9) (the authors' `dist_kd.py`).
  """
  s = _common.as_f32(student_logits, "student_logits", rank=2)
  t = _common.like(teacher_logits, s, "teacher_logits", "student_logits")
  _common.check_temperature(temperature)
  y_s = jax.nn.softmax(s / temperature, axis=1)
  y_t = jax.nn.softmax(t / temperature, axis=1)
  scale = temperature ** 2
  inter = inter_weight * scale * (1.0 - pearson_correlation(y_s, y_t))
  intra = intra_weight * scale * (1.0 - pearson_correlation(y_s.T, y_t.T))
  return inter, intra
