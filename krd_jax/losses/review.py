"""ReviewKD's hierarchical context loss (HCL): a stage map matched to the teacher's at
its own resolution and at 4x4, 2x2 and 1x1 average-pooled, the coarser levels weighted
by halves.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from krd_jax.losses import _common

Array = jax.Array
ArrayLike = _common.ArrayLike

__all__ = ["hcl_loss"]


def hcl_loss(student_map: ArrayLike, teacher_map: ArrayLike) -> Array:
  """One level's HCL per example.

  Args:
    student_map: [B, H, W, C], the student's fused map at this level.
    teacher_map: [B, H, W, C], the teacher's (pre-ReLU) stage map.

  Returns:
    float32 [B]: (mse + sum_l w_l mse_l) / (1 + sum_l w_l) over the pooled sizes l in
    (4, 2, 1) smaller than H, w_l = 1/2, 1/4, 1/8 in that order, each mse a mean over
    (H, W, C) of the example; the batch mean is the authors' `hcl_loss` term.

  References:
    Chen, Liu, Zhao, Jia 2021, "Distilling Knowledge via Knowledge Review", CVPR,
    section 3.3 (the authors' and mdistiller's `hcl_loss`).
  """
  s = _common.as_f32(student_map, "student_map", rank=4)
  t = _common.like(teacher_map, s, "teacher_map", "student_map")
  mse = lambda a, b: jnp.mean(jnp.square(a - b), axis=(1, 2, 3))
  loss, weight, total = mse(s, t), 1.0, 1.0
  for size in (4, 2, 1):
    if size >= s.shape[1]:
      continue
    weight /= 2.0
    loss = loss + weight * mse(_common.avg_pool_to(s, size), _common.avg_pool_to(t, size))
    total += weight
  return loss / total
