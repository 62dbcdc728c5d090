"""FitNet's hint loss: the student's regressed features against the teacher's.

Per-example, float32 [B]; reduce with `jnp.mean` (the mean of the per-example losses is
mdistiller's `F.mse_loss` over the whole batch, the authors' recipe).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from krd_jax.losses import _common

Array = jax.Array
ArrayLike = _common.ArrayLike

__all__ = ["hint_loss"]


def hint_loss(regressed_student_features: ArrayLike,
              teacher_features: ArrayLike) -> Array:
  """Mean squared error between a regressor of the student's features and the teacher's.

  Args:
    regressed_student_features: [B, d_t], the student's features mapped by a trained
      regressor to the teacher's width.
    teacher_features: [B, d_t].

  Returns:
    float32 [B]: the mean over features of the squared difference; zero where they match.

  References:
    Romero et al. 2015, "FitNets: Hints for Thin Deep Nets", ICLR, section 2.2 (the
    hint-based training loss, 1/2 ||u_h - r(v_g)||^2: here a mean over features, as
    mdistiller's `FitNet` computes it, without the 1/2).
  """
  g = _common.as_f32(regressed_student_features, "regressed_student_features", rank=2)
  h = _common.like(teacher_features, g, "teacher_features", "regressed_student_features")
  return jnp.mean(jnp.square(g - h), axis=-1)
