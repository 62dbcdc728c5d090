"""DIST: CE + beta * inter-class relation + gamma * intra-class relation of the
softened predictions (Pearson correlation rather than an exact match).

Settings: beta = gamma = 1, T = 4, CE weight 1 (the authors' CIFAR values were not found;
tau 4 is WTTM's re-implementation's, torchdistill defaults to 1). On long-tailed data the
intra-class term sees few tail examples per batch.

References:
  Huang, You, Wang, Qian, Xu, Knowledge Distillation from A Stronger Teacher,
  NeurIPS 2022.
"""

import jax.numpy as jnp

from krd_jax.losses import correlation
from krd_jax.methods import base


def build(counts, temperature, inter_weight, intra_weight, ce_weight):
  ce_fn = base.student_ce(counts, "ce")

  def fn(out, distill_scale):
    inter, intra = correlation.dist_loss(out.student_logits, base.need(out, "teacher_logits"),
                                         temperature, inter_weight, intra_weight)
    return base.total(ce_weight * ce_fn(out), {"dist_inter": jnp.mean(inter),
                                               "dist_intra": jnp.mean(intra)}, distill_scale)

  return base.StudentObjective(fn, needs_teacher=True)


METHOD = base.Method(
    name="dist", title="DIST",
    params={"temperature": base.temperature(4.0),
            "inter_weight": base.weight(1.0, "beta: the inter-class (per example) term"),
            "intra_weight": base.weight(1.0, "gamma: the intra-class (per class) term"),
            "ce_weight": base.weight(1.0, "weight of the student's CE term"),
            "warmup_epochs": base.warmup(default=0)},  # the authors' loss: no ramp
    build=build, uses_teacher=lambda hp: True)
