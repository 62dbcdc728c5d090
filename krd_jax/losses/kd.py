"""Logit distillation baselines: KD, DKD and BKD (docs/method.md, "The baselines").

All functions are per-example: inputs [B, C] (any float dtype, computed in
float32), output float32 [B]. Reduce with `jnp.mean` or
`krd_jax.losses.balanced_mean`. Gradients flow into both student and teacher
logits; stop them at the teacher in the train step if it is not being trained
(krd_jax.train runs it in inference mode anyway).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax

from krd_jax.losses import _common

Array = jax.Array
ArrayLike = _common.ArrayLike

__all__ = ["bkd_loss", "dkd_loss", "kd_loss", "standardize_logits"]


def standardize_logits(logits: ArrayLike, eps: float = 1e-7) -> Array:
  """Each row's z-score, (z - mean) / (eps + std) with the unbiased (N - 1) std: logit
  standardization before a tempered softmax.

  Args:
    logits: [B, C], C >= 2.
    eps: added to the std (the authors' 1e-7).

  Returns:
    float32 [B, C], each row of mean 0 and (unbiased) std just under 1.

  References:
    Sun, Ren, Li, Wang, Cao 2024, "Logit Standardization in Knowledge Distillation",
    CVPR, eq. (9) and Algorithm 1 (the authors' `normalize`, torch.std: unbiased).
  """
  z = _common.as_f32(logits, "logits", rank=2)
  centred = z - jnp.mean(z, axis=-1, keepdims=True)
  std = jnp.std(z, axis=-1, keepdims=True, ddof=1)
  return centred / (eps + std)


def kd_loss(student_logits: ArrayLike, teacher_logits: ArrayLike,
            temperature: float = 4.0) -> Array:
  """Hinton knowledge distillation, T^2 KL(softmax(t/T) || softmax(s/T)).

  Args:
    student_logits: [B, C].
    teacher_logits: [B, C].
    temperature: T > 0.

  Returns:
    float32 [B], >= 0; zero where the rows agree up to a constant shift.

  References:
    Hinton, Vinyals, Dean 2015, "Distilling the Knowledge in a Neural
    Network", section 2 (soft targets, T^2 gradient scaling).
  """
  _common.check_temperature(temperature)
  s = _common.as_f32(student_logits, "student_logits", rank=2)
  t = _common.like(teacher_logits, s, "teacher_logits", "student_logits")
  return _common.tempered_kl(s, t, temperature)


def dkd_loss(student_logits: ArrayLike, teacher_logits: ArrayLike,
             labels: ArrayLike, alpha: float = 1.0, beta: float = 8.0,
             temperature: float = 4.0) -> Array:
  """Decoupled KD: alpha * TCKD + beta * NCKD, each T^2-scaled.

  TCKD is the KL between the binary (target, rest) distributions; NCKD the KL
  between the distributions over non-target classes, as in mdistiller's
  `dkd_loss` but with exact masking instead of subtracting 1000 from the target
  logit (identical for moderate logits, still exact for huge ones).

  Args:
    student_logits: [B, C], C >= 2.
    teacher_logits: [B, C].
    labels: integer [B].
    alpha: TCKD weight.
    beta: NCKD weight.
    temperature: T > 0.

  Returns:
    float32 [B].

  References:
    Zhao et al. 2022, "Decoupled Knowledge Distillation", Eq. (7)
    (KD = TCKD + (1 - p_t^T) NCKD) and Eq. (8) (DKD = alpha TCKD + beta NCKD).
  """
  _common.check_temperature(temperature)
  s, labels = _common.logits_and_labels(student_logits, labels,
                                        "student_logits")
  t = _common.like(teacher_logits, s, "teacher_logits", "student_logits")
  if s.shape[1] < 2:
    raise ValueError("dkd_loss needs at least 2 classes in student_logits")
  target = jax.nn.one_hot(labels, s.shape[1], dtype=bool)
  s, t = s / temperature, t / temperature
  tckd = optax.losses.kl_divergence_with_log_targets(
      _binary_log_probs(s, target), _binary_log_probs(t, target))
  nckd = optax.losses.kl_divergence_with_log_targets(
      _non_target_log_softmax(s, target), _non_target_log_softmax(t, target),
      where=~target)
  return temperature**2 * (alpha * tckd + beta * nckd)


def bkd_loss(student_logits: ArrayLike, teacher_logits: ArrayLike,
             class_weights: ArrayLike, temperature: float = 4.0) -> Array:
  """Balanced KD: KL to the teacher's probabilities reweighted per class.

  The target is q_c = w_c p_c / sum_k w_k p_k with p = softmax(t/T), computed
  stably as softmax(t/T + log w). The BKD objective is CE plus this term.

  Args:
    student_logits: [B, C].
    teacher_logits: [B, C].
    class_weights: [C], positive; BKD uses `priors.effective_number_weights`.
      Their scale does not matter.
    temperature: T > 0.

  Returns:
    float32 [B], T^2 KL(q || softmax(s/T)).

  References:
    Zhang et al. 2021, "Balanced Knowledge Distillation for Long-tailed
    Learning", Eq. (4)-(5) (instance-balanced CE + class-balanced KD).
  """
  _common.check_temperature(temperature)
  s = _common.as_f32(student_logits, "student_logits", rank=2)
  t = _common.like(teacher_logits, s, "teacher_logits", "student_logits")
  w = _common.per_class(class_weights, s.shape[1], "class_weights")
  log_q = jax.nn.log_softmax(t / temperature + jnp.log(w), axis=-1)
  log_p_s = jax.nn.log_softmax(s / temperature, axis=-1)
  return temperature**2 * optax.losses.kl_divergence_with_log_targets(
      log_p_s, log_q)


def _binary_log_probs(logits: Array, target: Array) -> Array:
  """[log p_y, log(1 - p_y)] per row, without forming 1 - p_y."""
  lse_all = jax.nn.logsumexp(logits, axis=-1)
  lse_rest = _masked_logsumexp(logits, ~target)
  log_p_y = jnp.sum(jnp.where(target, logits, 0.0), axis=-1) - lse_all
  return jnp.stack([log_p_y, lse_rest - lse_all], axis=-1)


def _non_target_log_softmax(logits: Array, target: Array) -> Array:
  """log-softmax over the non-target classes; the target entry is 0, a placeholder.

  The placeholder keeps the KL's masked-out term, and so every gradient, free of NaN:
  -inf would make it inf - inf, and the target's own logit minus the non-target
  logsumexp overflows exp() where the target dominates (a confident teacher, or one
  rectified to be right, with logits in the hundreds).
  """
  return jnp.where(target, 0.0, logits - _masked_logsumexp(logits, ~target)[:, None])


def _masked_logsumexp(logits: Array, mask: Array) -> Array:
  return jax.nn.logsumexp(jnp.where(mask, logits, -jnp.inf), axis=-1)
