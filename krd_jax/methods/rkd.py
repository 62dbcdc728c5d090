"""Relational knowledge distillation: CE + distance_weight * distance term +
angle_weight * angle term, on the batch's pooled features.

The authors' CIFAR recipe as mdistiller runs it: CE weight 1, distance 25, angle 50,
non-squared distances, no warm-up.

References:
  Park, Kim, Lu, Cho, Relational Knowledge Distillation, CVPR 2019.
"""

import jax.numpy as jnp

from krd_jax.losses import relations
from krd_jax.methods import base


def build(counts, distance_weight, angle_weight, ce_weight):
  ce_fn = base.student_ce(counts, "ce")

  def fn(out, distill_scale):
    s, t = base.need(out, "student_features"), base.need(out, "teacher_features")
    terms = {"rkd_distance": distance_weight * jnp.mean(relations.rkd_distance_loss(s, t)),
             "rkd_angle": angle_weight * jnp.mean(relations.rkd_angle_loss(s, t))}
    return base.total(ce_weight * ce_fn(out), terms, distill_scale)

  return base.StudentObjective(fn, needs_teacher=True)


METHOD = base.Method(
    name="rkd", title="RKD",
    params={"distance_weight": base.weight(25.0, "weight of the distance term"),
            "angle_weight": base.weight(50.0, "weight of the angle term"),
            "ce_weight": base.weight(1.0, "weight of the student's CE term"),
            "warmup_epochs": base.warmup(default=0)},
    build=build, uses_teacher=lambda hp: True)
