"""Relations among a batch's pooled features: PKT's similarity distributions, RKD's
distances and angles. Each term depends on the whole batch; returned per example
(float32 [B], example i's row of the relation), so `jnp.mean` gives the authors'
batch loss.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax

from krd_jax.losses import _common

Array = jax.Array
ArrayLike = _common.ArrayLike

__all__ = ["pkt_loss", "rkd_angle_loss", "rkd_distance_loss"]


def _pair(student_features: ArrayLike, teacher_features: ArrayLike) -> tuple[Array, Array]:
  s = _common.as_f32(student_features, "student_features", rank=2)
  t = _common.as_f32(teacher_features, "teacher_features", rank=2)
  if s.shape[0] != t.shape[0]:
    raise ValueError(f"student_features has batch {s.shape[0]}, teacher_features "
                     f"{t.shape[0]}")
  return s, t


def _similarity_distribution(f: Array, eps: float) -> Array:
  f = f / (jnp.sqrt(jnp.sum(jnp.square(f), axis=1, keepdims=True)) + eps)
  similarity = (f @ f.T + 1.0) / 2.0  # cosine similarity scaled to [0, 1]
  return similarity / jnp.sum(similarity, axis=1, keepdims=True)


def pkt_loss(student_features: ArrayLike, teacher_features: ArrayLike,
             eps: float = 1e-7) -> Array:
  """Probabilistic knowledge transfer: KL between the teacher's and the student's
  distributions of (rescaled) cosine similarity to the other examples of the batch.

  Args:
    student_features: [B, d_s] pooled features (widths may differ).
    teacher_features: [B, d_t].
    eps: the authors' guard against zero norms and log(0).

  Returns:
    float32 [B]: row i's mean over j of q_ij log((q_ij + eps) / (p_ij + eps)).

  References:
    Passalis & Tefas 2018, "Learning Deep Representations with Probabilistic Knowledge
    Transfer", ECCV, eq. (6)-(8) with the cosine kernel (the authors' `cosine_similarity_
    loss`, as mdistiller's `PKT.py` runs it).
  """
  s, t = _pair(student_features, teacher_features)
  p = _similarity_distribution(s, eps)
  q = _similarity_distribution(t, eps)
  return jnp.mean(q * jnp.log((q + eps) / (p + eps)), axis=1)


def _distances(f: Array, eps: float) -> Array:
  """Pairwise Euclidean distances [B, B] with a zero diagonal, normalised by their mean
  over the off-diagonal pairs that are not zero."""
  square = jnp.sum(jnp.square(f), axis=1)
  d = jnp.sqrt(jnp.maximum(square[:, None] + square[None, :] - 2.0 * f @ f.T, eps))
  d = d * (1.0 - jnp.eye(f.shape[0], dtype=f.dtype))
  positive = d > 0
  return d / (jnp.sum(jnp.where(positive, d, 0.0)) / jnp.maximum(jnp.sum(positive), 1))


def rkd_distance_loss(student_features: ArrayLike, teacher_features: ArrayLike,
                      eps: float = 1e-12) -> Array:
  """RKD's distance term: Huber (smooth L1) between mean-normalised pairwise distances.

  Returns:
    float32 [B]: row i's mean over j of smooth_l1(d_s(i, j) - d_t(i, j)).

  References:
    Park, Kim, Lu, Cho 2019, "Relational Knowledge Distillation", CVPR, eq. (4)-(5); the
    distances' clamp at eps and zero diagonal as in the authors' code (mdistiller `RKD.py`).
  """
  s, t = _pair(student_features, teacher_features)
  return jnp.mean(optax.losses.huber_loss(_distances(s, eps), _distances(t, eps), delta=1.0),
                  axis=1)


def _angles(f: Array) -> Array:
  """cos of the angle at j between i and k, [B, B, B] (entry [j, i, k])."""
  diff = _common.l2_normalize(f[None, :, :] - f[:, None, :])  # [j, i]: e_i - e_j
  return jnp.einsum("jid,jkd->jik", diff, diff)


def rkd_angle_loss(student_features: ArrayLike, teacher_features: ArrayLike) -> Array:
  """RKD's angle term: Huber (smooth L1) between the cosines of every triplet's angle.

  Returns:
    float32 [B]: for each apex j, the mean over (i, k) of smooth_l1(cos_s - cos_t).

  References:
    Park et al. 2019, eq. (6)-(7).
  """
  s, t = _pair(student_features, teacher_features)
  return jnp.mean(optax.losses.huber_loss(_angles(s), _angles(t), delta=1.0), axis=(1, 2))
