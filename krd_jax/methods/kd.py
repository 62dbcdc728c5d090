"""Knowledge distillation: ce_weight CE + kd_weight T^2 KL(teacher || student); with
`standardize`, both logits z-scored first (logit standardization; `lskd` runs it at its
authors' settings).

References:
  Hinton et al., Distilling the knowledge in a neural network, 2015.
  Sun et al., Logit Standardization in Knowledge Distillation, CVPR 2024.
"""

import jax.numpy as jnp

from krd_jax.losses import kd as kd_losses
from krd_jax.methods import base


def build(counts, temperature, kd_weight, ce_weight, standardize):
  ce_fn = base.student_ce(counts, "ce")

  def fn(out, distill_scale):
    student, teacher = base.standardized(out, standardize)
    dist = jnp.mean(kd_losses.kd_loss(student, teacher, temperature))
    return base.total(ce_weight * ce_fn(out), {"kd": kd_weight * dist}, distill_scale)

  return base.StudentObjective(fn, needs_teacher=True)


METHOD = base.Method(
    name="kd", title="KD",
    params={"temperature": base.temperature(),
            "kd_weight": base.weight(1.0, "weight of the distillation term"),
            "ce_weight": base.weight(1.0, "weight of the student's CE term"),
            "standardize": base.standardize_param(),
            "warmup_epochs": base.warmup()},
    build=build, uses_teacher=lambda hp: True)
