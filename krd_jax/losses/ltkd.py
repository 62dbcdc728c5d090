"""LTKD: knowledge distillation split into groups of classes, rebalanced for the tail.

Kim, "Distilling Balanced Knowledge from a Biased Teacher" (CVPR 2026, arXiv
2506.18496) has no public code; this follows third-party notes on the paper (which
flag some of their figures as unverified). KD's KL between the teacher's and the
student's tempered softmax splits exactly into

  KL(p || q) = KL(P || Q) + sum_g P_g KL(p|g || q|g),

with P_g = sum_{c in g} p_c the group probabilities (head / medium / tail) and p|g
the distribution within group g. A teacher trained on long-tailed data puts too
much mass on the head group (P) and, through the weights P_g, lets the head's
within-group term dominate. LTKD rebalances both:

- the cross-group target (`rebalance`): "batch", the paper's, sums the teacher's
  group probabilities over the batch, S_g = mean_b P_bg, and scales every sample's
  group probabilities by the factor that takes that batch total to uniform, 1 / (G S_g),
  then renormalises: P~_bg proportional to P_bg / S_g. "prior", our earlier
  reconstruction from the abstract, calibrates by the training group prior instead,
  P~ proportional to P_g pi_g^(-group_tau).
- the within-group terms are weighted by a constant, 1 / G per group
  (`within="uniform"`), instead of by P_g (`within="teacher"`, KD's own weighting).

With rebalance="prior", group_tau = 0 and within="teacher" the loss is exactly KD.
Every choice is an argument, so ablations decide the defaults.

Per-example: inputs [B, C] (any float dtype, computed in float32), output float32 [B].
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from krd_jax.losses import _common

Array = jax.Array
ArrayLike = _common.ArrayLike

WITHIN_WEIGHTS = ("uniform", "teacher")
REBALANCE = ("batch", "prior")

__all__ = ["REBALANCE", "WITHIN_WEIGHTS", "group_kl_decomposition", "ltkd_loss"]


def _inputs(student_logits, teacher_logits, group_matrix, temperature):
  _common.check_temperature(temperature)
  s = _common.as_f32(student_logits, "student_logits", rank=2)
  t = _common.like(teacher_logits, s, "teacher_logits", "student_logits")
  groups = _common.as_f32(group_matrix, "group_matrix", rank=2)
  if groups.shape[0] != s.shape[1]:
    raise ValueError(f"group_matrix has {groups.shape[0]} rows but the logits have "
                     f"{s.shape[1]} classes")
  return s, t, groups


def _split(s: Array, t: Array, groups: Array, temperature: float):
  """(log P [B, G], log Q [B, G], within-group KLs [B, G]) of the tempered softmaxes."""
  log_p = jax.nn.log_softmax(t / temperature, axis=-1)
  log_q = jax.nn.log_softmax(s / temperature, axis=-1)
  # log P_g = log sum_{c in g} p_c (a weighted logsumexp: b is the membership).
  log_pg = jax.nn.logsumexp(log_p[:, :, None], axis=1, b=groups[None])
  log_qg = jax.nn.logsumexp(log_q[:, :, None], axis=1, b=groups[None])
  # Within group g(c): log p|g = log p_c - log P_g(c) (each class in one group).
  log_p_in, log_q_in = log_p - log_pg @ groups.T, log_q - log_qg @ groups.T
  within = (jnp.exp(log_p_in) * (log_p_in - log_q_in)) @ groups
  return log_pg, log_qg, within


def group_kl_decomposition(student_logits: ArrayLike, teacher_logits: ArrayLike,
                           group_matrix: ArrayLike,
                           temperature: float = 4.0) -> tuple[Array, Array, Array]:
  """The exact split of KL(softmax(t/T) || softmax(s/T)) over groups of classes.

  Args:
    student_logits: [B, C].
    teacher_logits: [B, C].
    group_matrix: [C, G] one-hot membership (`priors.group_matrix`); every class
      in exactly one group, every group non-empty.
    temperature: T > 0.

  Returns:
    (cross [B]: KL(P || Q) over group probabilities, within [B, G]: KL(p|g || q|g),
    teacher_groups [B, G]: P), unscaled (no T^2), so that
    cross + sum_g P_g within_g == KL(p || q).
  """
  log_pg, log_qg, within = _split(*_inputs(student_logits, teacher_logits, group_matrix,
                                           temperature), temperature)
  cross = jnp.sum(jnp.exp(log_pg) * (log_pg - log_qg), axis=-1)
  return cross, within, jnp.exp(log_pg)


def ltkd_loss(student_logits: ArrayLike, teacher_logits: ArrayLike,
              group_matrix: ArrayLike, log_group_prior: ArrayLike,
              temperature: float = 4.0, group_tau: float = 1.0, alpha: float = 1.0,
              beta: float = 1.0, within: str = "uniform",
              rebalance: str = "batch") -> Array:
  """Long-tailed KD: T^2 (alpha * cross-group KL to the rebalanced teacher groups
  + beta * the within-group KLs, weighted per `within`).

  Args:
    student_logits: [B, C].
    teacher_logits: [B, C].
    group_matrix: [C, G] one-hot membership (`priors.group_matrix`).
    log_group_prior: [G] log of each group's share of the training images (read by
      rebalance="prior").
    temperature: T > 0.
    group_tau: rebalance="prior" only: P~ proportional to P_g pi_g^(-group_tau); 0
      keeps the teacher's.
    alpha: weight of the cross-group term.
    beta: weight of the within-group terms.
    within: "uniform" (each group 1/G) or "teacher" (P_g, as KD).
    rebalance: "batch" (the paper's: each group's batch total of teacher probability
      taken to uniform, P~_bg proportional to P_bg / mean_b P_bg; a batch of one
      sample gets the uniform target) or "prior" (the training group prior).

  Returns:
    float32 [B], >= 0; with "batch" each row depends on the whole batch (the batch is
    the global one under data parallelism). rebalance="prior", group_tau=0,
    within="teacher", alpha=beta=1 is `kd_loss`.

  References:
    Kim, "Long-Tailed Distribution-Aware Knowledge Distillation", CVPR 2026
    (arXiv 2506.18496), reconstructed from the abstract; Hinton et al. 2015.
  """
  if within not in WITHIN_WEIGHTS:
    raise ValueError(f"within must be one of {WITHIN_WEIGHTS}; got {within!r}")
  if rebalance not in REBALANCE:
    raise ValueError(f"rebalance must be one of {REBALANCE}; got {rebalance!r}")
  s, t, groups = _inputs(student_logits, teacher_logits, group_matrix, temperature)
  prior = _common.as_f32(log_group_prior, "log_group_prior", rank=1)
  if prior.shape[0] != groups.shape[1]:
    raise ValueError(f"log_group_prior has {prior.shape[0]} entries but group_matrix "
                     f"has {groups.shape[1]} groups")
  log_pg, log_qg, within_kl = _split(s, t, groups, temperature)
  if rebalance == "batch":
    # log S_g = log mean_b P_bg; dividing by S_g takes the batch total to uniform.
    log_batch = jax.nn.logsumexp(log_pg, axis=0) - jnp.log(log_pg.shape[0])
    log_target = jax.nn.log_softmax(log_pg - log_batch, axis=-1)
  else:
    log_target = jax.nn.log_softmax(log_pg - group_tau * prior, axis=-1)
  cross = jnp.sum(jnp.exp(log_target) * (log_target - log_qg), axis=-1)
  weights = (jnp.exp(log_pg) if within == "teacher"
             else jnp.full_like(log_pg, 1.0 / groups.shape[1]))
  return temperature**2 * (alpha * cross + beta * jnp.sum(weights * within_kl, axis=-1))
