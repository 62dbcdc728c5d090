"""Probabilistic knowledge transfer: CE + weight * KL between the teacher's and the
student's distributions of cosine similarity among the batch's pooled features.

The authors' CIFAR recipe as mdistiller runs it: CE weight 1, PKT weight 30000, no
warm-up.

References:
  Passalis & Tefas, Learning Deep Representations with Probabilistic Knowledge
  Transfer, ECCV 2018.
"""

import jax.numpy as jnp

from krd_jax.losses import relations
from krd_jax.methods import base


def build(counts, pkt_weight, ce_weight):
  ce_fn = base.student_ce(counts, "ce")

  def fn(out, distill_scale):
    pkt = jnp.mean(relations.pkt_loss(base.need(out, "student_features"),
                                      base.need(out, "teacher_features")))
    return base.total(ce_weight * ce_fn(out), {"pkt": pkt_weight * pkt}, distill_scale)

  return base.StudentObjective(fn, needs_teacher=True)


METHOD = base.Method(
    name="pkt", title="PKT",
    params={"pkt_weight": base.weight(30000.0, "weight of the PKT term"),
            "ce_weight": base.weight(1.0, "weight of the student's CE term"),
            "warmup_epochs": base.warmup(default=0)},
    build=build, uses_teacher=lambda hp: True)
