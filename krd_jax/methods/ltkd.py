"""LTKD: ce_weight CE + KD split into head / medium / tail groups and rebalanced.

A reconstruction from the paper's abstract (no public code; see krd_jax/losses/ltkd.py
for the decomposition and each selectable choice).

References:
  Kim, Long-Tailed Distribution-Aware Knowledge Distillation, CVPR 2026,
  arXiv 2506.18496.
"""

import jax.numpy as jnp

from krd_jax import priors
from krd_jax.losses import ltkd as ltkd_losses
from krd_jax.methods import base


def build(counts, temperature, alpha, beta, group_tau, within, groups, ce_weight):
  group_matrix = priors.group_matrix(counts, groups)
  log_group_prior = jnp.asarray(priors.log_group_prior(counts, group_matrix))
  group_matrix = jnp.asarray(group_matrix)
  ce_fn = base.student_ce(counts, "ce")

  def fn(out, distill_scale):
    dist = jnp.mean(ltkd_losses.ltkd_loss(
        out.student_logits, base.need(out, "teacher_logits"), group_matrix,
        log_group_prior, temperature, group_tau, alpha, beta, within))
    return base.total(ce_weight * ce_fn(out), {"ltkd": dist}, distill_scale)

  return base.StudentObjective(fn, needs_teacher=True)


METHOD = base.Method(
    name="ltkd", title="LTKD",
    params={
        "temperature": base.temperature(),
        "alpha": base.weight(1.0, "weight of the cross-group term"),
        "beta": base.weight(1.0, "weight of the within-group terms"),
        "group_tau": base.Param(1.0, "calibration of the teacher's group distribution by "
                                "the group priors (0: the teacher's own)", low=0.0),
        "within": base.Param("uniform", "within-group weights: every group equal, or the "
                             "teacher's group probabilities (KD's)",
                             choices=ltkd_losses.WITHIN_WEIGHTS),
        "groups": base.Param("tercile", "how classes form head / medium / tail",
                             choices=("tercile", "absolute")),
        "ce_weight": base.weight(),
        "warmup_epochs": base.warmup(),
    },
    build=build, uses_teacher=lambda hp: True)
