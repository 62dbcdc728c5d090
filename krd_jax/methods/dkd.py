"""Decoupled knowledge distillation: CE + alpha TCKD + beta NCKD, tempered.

`standardize` z-scores both logits first (logit standardization; its authors scale
alpha and beta by 9 with it, which this switch leaves to the config).

References:
  Zhao et al., Decoupled knowledge distillation, CVPR 2022.
  Sun et al., Logit Standardization in Knowledge Distillation, CVPR 2024.
"""

import jax.numpy as jnp

from krd_jax.losses import kd as kd_losses
from krd_jax.methods import base


def build(counts, alpha, beta, temperature, standardize):
  ce_fn = base.student_ce(counts, "ce")

  def fn(out, distill_scale):
    student, teacher = base.standardized(out, standardize)
    dist = jnp.mean(kd_losses.dkd_loss(student, teacher, base.need(out, "labels"), alpha,
                                       beta, temperature))
    return base.total(ce_fn(out), {"dkd": dist}, distill_scale)

  return base.StudentObjective(fn, needs_teacher=True)


METHOD = base.Method(
    name="dkd", title="DKD",
    params={"alpha": base.weight(1.0, "TCKD weight"), "beta": base.weight(8.0, "NCKD weight"),
            "temperature": base.temperature(), "standardize": base.standardize_param(),
            "warmup_epochs": base.warmup()},
    build=build, uses_teacher=lambda hp: True)
