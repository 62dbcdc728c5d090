"""LTKD: ce_weight CE + KD split into head / medium / tail groups and rebalanced.

As the paper is described by third-party notes (no public code; krd_jax/losses/ltkd.py
has the decomposition and each selectable choice): the cross-group target rebalanced
from the teacher's own group probabilities summed over the batch (`rebalance="batch"`,
the default) and the within-group terms weighted by a constant. Our earlier
reconstruction from the abstract, which calibrates by the training group prior, is
`rebalance="prior"` (with its `group_tau`). alpha, beta and T are not given by the
notes: the defaults (1, 1, 4) are KD's, not tuned.

References:
  Kim, Distilling Balanced Knowledge from a Biased Teacher, CVPR 2026,
  arXiv 2506.18496.
"""

import jax.numpy as jnp

from krd_jax import priors
from krd_jax.losses import ltkd as ltkd_losses
from krd_jax.methods import base


def build(counts, temperature, alpha, beta, group_tau, within, groups, ce_weight,
          rebalance):
  group_matrix = priors.group_matrix(counts, groups)
  log_group_prior = jnp.asarray(priors.log_group_prior(counts, group_matrix))
  group_matrix = jnp.asarray(group_matrix)
  ce_fn = base.student_ce(counts, "ce")

  def fn(out, distill_scale):
    dist = jnp.mean(ltkd_losses.ltkd_loss(
        out.student_logits, base.need(out, "teacher_logits"), group_matrix,
        log_group_prior, temperature, group_tau, alpha, beta, within, rebalance))
    return base.total(ce_weight * ce_fn(out), {"ltkd": dist}, distill_scale)

  return base.StudentObjective(fn, needs_teacher=True)


METHOD = base.Method(
    name="ltkd", title="LTKD",
    params={
        "temperature": base.temperature(),
        "alpha": base.weight(1.0, "weight of the cross-group term"),
        "beta": base.weight(1.0, "weight of the within-group terms"),
        "rebalance": base.Param("batch", "the cross-group target: the teacher's group "
                                "probabilities taken to uniform over the batch (the "
                                "paper's), or calibrated by the training group prior "
                                "(our earlier reconstruction)",
                                choices=ltkd_losses.REBALANCE,
                                # Runs from before it computed "prior".
                                changes_runs=True),
        "group_tau": base.Param(1.0, "calibration of the teacher's group distribution by "
                                "the group priors (0: the teacher's own)", low=0.0,
                                acts=base.acts_with(rebalance="prior")),
        "within": base.Param("uniform", "within-group weights: every group equal, or the "
                             "teacher's group probabilities (KD's)",
                             choices=ltkd_losses.WITHIN_WEIGHTS),
        "groups": base.Param("tercile", "how classes form head / medium / tail",
                             choices=("tercile", "absolute")),
        "ce_weight": base.weight(1.0, "weight of the student's CE term"),
        "warmup_epochs": base.warmup(),
    },
    build=build, uses_teacher=lambda hp: True)
