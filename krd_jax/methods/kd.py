"""Knowledge distillation: ce_weight CE + kd_weight T^2 KL(teacher || student).

References:
  Hinton et al., Distilling the knowledge in a neural network, 2015.
"""

import jax.numpy as jnp

from krd_jax.losses import kd as kd_losses
from krd_jax.methods import base


def build(counts, temperature, kd_weight, ce_weight):
  ce_fn = base.student_ce(counts, "ce")

  def fn(out, distill_scale):
    dist = jnp.mean(kd_losses.kd_loss(out.student_logits, base.need(out, "teacher_logits"),
                                      temperature))
    return base.total(ce_weight * ce_fn(out), {"kd": kd_weight * dist}, distill_scale)

  return base.StudentObjective(fn, needs_teacher=True)


METHOD = base.Method(
    name="kd", title="KD",
    params={"temperature": base.temperature(),
            "kd_weight": base.weight(1.0, "weight of the distillation term"),
            "ce_weight": base.weight(1.0, "weight of the student's CE term"),
            "warmup_epochs": base.warmup()},
    build=build, uses_teacher=lambda hp: True)
