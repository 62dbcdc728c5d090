"""KRDistill: representation- and logit-rectified distillation.

Our reconstruction of Huang et al. 2024 (arXiv 2409.07694) from its text; the
paper's equations were not available to us, so equation references below are
to docs/method.md, and every choice there (tau, swap, lam, rho) is an
argument here. Per-example functions return float32 [B]; average them with
`balanced_mean` for the balanced weighting (rho).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from krd_jax.losses import _common
from krd_jax.losses import correlation
from krd_jax.losses import kd
from krd_jax.priors import pad_features

Array = jax.Array
ArrayLike = _common.ArrayLike

__all__ = [
    "logit_rectified_loss",
    "logit_rectified_relation_loss",
    "rectify_teacher_features",
    "rectify_teacher_logits",
    "representation_rectified_loss",
    "warmup_scale",
]


def rectify_teacher_logits(teacher_logits: ArrayLike, labels: ArrayLike,
                           log_prior: ArrayLike, tau: float = 1.0,
                           swap: bool = True) -> Array:
  """Prior- and label-corrected teacher logits.

  First z~ = z - tau * log(pi) moves the teacher from the training prior to the
  balanced one. Then, where argmax z~ != y, the values at argmax and at y are
  exchanged: the rectified teacher is right on every training sample while
  every other class keeps its logit.

  Args:
    teacher_logits: [B, C].
    labels: integer [B].
    log_prior: [C], `priors.log_prior(counts)`.
    tau: prior-correction strength; 0 disables it, 1 is Bayes-exact.
    swap: whether to apply the label-correcting swap (a static bool).

  Returns:
    float32 [B, C].

  References:
    docs/method.md, LRD steps 1 (prior correction) and 2 (label correction);
    Menon et al. 2021, Eq. (9) (post-hoc logit adjustment).
  """
  z, labels = _common.logits_and_labels(teacher_logits, labels,
                                        "teacher_logits")
  lp = _common.per_class(log_prior, z.shape[1], "log_prior")
  z = z - tau * lp
  if not swap:
    return z
  num_classes = z.shape[1]
  top = jnp.argmax(z, axis=-1)
  at_label = jax.nn.one_hot(labels, num_classes, dtype=bool)
  at_top = jax.nn.one_hot(top, num_classes, dtype=bool)
  z_label = jnp.take_along_axis(z, labels[:, None], axis=-1)
  z_top = jnp.take_along_axis(z, top[:, None], axis=-1)
  # Select rather than add differences, so swapped values are bit-exact and
  # untouched entries stay untouched. Where top == label both masks coincide
  # and z_top == z_label, so the row is unchanged.
  return jnp.where(at_label, z_top, jnp.where(at_top, z_label, z))


def logit_rectified_loss(student_logits: ArrayLike, teacher_logits: ArrayLike,
                         labels: ArrayLike, log_prior: ArrayLike,
                         tau: float = 1.0, temperature: float = 4.0,
                         swap: bool = True, nckd_weight: float | None = None,
                         rectify_non_target: bool = True) -> Array:
  """LRD: T^2 KL(softmax(z~_t / T) || softmax(z_s / T)) per example.

  The KL is TCKD + (1 - p~_t) NCKD (Zhao et al. 2022, Eq. 7), where p~_t is the
  rectified teacher's tempered probability of the label: the more confident the
  rectified teacher, the less its non-target classes teach. With `nckd_weight` the
  two are decoupled as in DKD, TCKD + nckd_weight * NCKD, on the rectified teacher
  (an option of ours, not the paper's); with `rectify_non_target=False` as well, only
  the target-vs-rest term reads the rectified teacher and NCKD distils the teacher as it
  is, its distribution over the non-target classes intact (ours too).

  Args:
    student_logits: [B, C].
    teacher_logits: [B, C].
    labels: integer [B].
    log_prior: [C], `priors.log_prior(counts)`.
    tau: prior-correction strength.
    temperature: T > 0.
    swap: whether to apply the label-correcting swap.
    nckd_weight: None for the KL; a weight >= 0 for the decoupled form.
    rectify_non_target: with `nckd_weight`, whether NCKD reads the rectified teacher
      (True) or the teacher's own logits (False: neither the prior correction nor the
      swap moves the non-target distribution). Ignored for the KL.

  Returns:
    float32 [B], >= 0.

  References:
    docs/method.md, LRD step 3; Zhao et al. 2022, "Decoupled Knowledge
    Distillation", Eq. (7) and (8).
  """
  _common.check_temperature(temperature)
  s = _common.as_f32(student_logits, "student_logits", rank=2)
  _common.like(teacher_logits, s, "teacher_logits", "student_logits")
  t = rectify_teacher_logits(teacher_logits, labels, log_prior, tau, swap)
  if nckd_weight is not None and not rectify_non_target:
    raw = _common.as_f32(teacher_logits, "teacher_logits", rank=2)
    return (kd.dkd_loss(s, t, labels, 1.0, 0.0, temperature) +
            kd.dkd_loss(s, raw, labels, 0.0, nckd_weight, temperature))
  if nckd_weight is not None:
    return kd.dkd_loss(s, t, labels, 1.0, nckd_weight, temperature)
  return _common.tempered_kl(s, t, temperature)


def logit_rectified_relation_loss(student_logits: ArrayLike, teacher_logits: ArrayLike,
                                  labels: ArrayLike, log_prior: ArrayLike,
                                  tau: float = 1.0, temperature: float = 4.0,
                                  swap: bool = True) -> tuple[Array, Array]:
  """LRD in DIST's relational form: the student's tempered probabilities matched to the
  rectified teacher's by Pearson correlation, across classes per example (inter) and
  across the batch per class (intra), rather than by their KL (ours, not the paper's).

  Correlation ignores a scale and an offset of each row's (and column's) probabilities,
  so the student copies how the rectified teacher's probabilities vary across the classes
  and across the batch's examples, not their exact values.

  Args:
    student_logits: [B, C].
    teacher_logits: [B, C].
    labels: integer [B].
    log_prior: [C], `priors.log_prior(counts)`.
    tau: prior-correction strength.
    temperature: T > 0.
    swap: whether to apply the label-correcting swap.

  Returns:
    (inter [B], intra [C]), float32: `correlation.dist_loss` of the student against the
    rectified teacher at unit weights; LRD is mean(inter) + mean(intra).

  References:
    docs/method.md, LRD; Huang, You, Wang, Qian, Xu 2022, "Knowledge Distillation from
    A Stronger Teacher", eq. (5)-(9).
  """
  _common.check_temperature(temperature)
  s = _common.as_f32(student_logits, "student_logits", rank=2)
  _common.like(teacher_logits, s, "teacher_logits", "student_logits")
  t = rectify_teacher_logits(teacher_logits, labels, log_prior, tau, swap)
  return correlation.dist_loss(s, t, temperature)


def rectify_teacher_features(teacher_features: ArrayLike, labels: ArrayLike,
                             anchors: ArrayLike, center: ArrayLike,
                             lam: float) -> Array:
  """h~_t = normalize((1 - lam) normalize(pad(h_t - mu)) + lam m_y).

  Args:
    teacher_features: [B, d] penultimate teacher features.
    labels: integer [B].
    anchors: [D, C] ETF anchors, D >= d (`priors.aligned_etf` or
      `priors.simplex_etf`); features are zero-padded from d to D.
    center: [d] balanced centre mu (`priors.balanced_center`).
    lam: mixing weight in [0, 1]; 0 keeps the teacher's direction, 1 replaces
      it with the class anchor.

  Returns:
    float32 [B, D], unit rows.

  References:
    docs/method.md, RRD step 1.
  """
  h = _common.as_f32(teacher_features, "teacher_features", rank=2)
  labels = _common.check_labels(labels, h.shape[0])
  m = _common.as_f32(anchors, "anchors", rank=2)
  mu = _common.as_f32(center, "center", rank=1)
  if mu.shape[0] != h.shape[1]:
    raise ValueError(f"center has {mu.shape[0]} entries but teacher_features "
                     f"has dimension {h.shape[1]}")
  if m.shape[0] < h.shape[1]:
    raise ValueError(f"anchors has dimension {m.shape[0]}, smaller than "
                     f"teacher_features' {h.shape[1]}; it must be >= it")
  direction = _common.l2_normalize(pad_features(h - mu, m.shape[0]))
  mixed = (1.0 - lam) * direction + lam * m.T[labels]
  return _common.l2_normalize(mixed)


def representation_rectified_loss(projected_student_features: ArrayLike,
                                  teacher_features: ArrayLike,
                                  labels: ArrayLike, anchors: ArrayLike,
                                  center: ArrayLike, lam: float) -> Array:
  """RRD: ||normalize(g(h_s)) - h~_t||^2 per example.

  Args:
    projected_student_features: [B, D], g(h_s) already computed by the
      student's trained linear projector.
    teacher_features: [B, d], d <= D.
    labels: integer [B].
    anchors: [D, C] ETF anchors.
    center: [d] balanced centre.
    lam: mixing weight in [0, 1].

  Returns:
    float32 [B], in [0, 4].

  References:
    docs/method.md, RRD steps 2-3.
  """
  g = _common.as_f32(projected_student_features, "projected_student_features",
                     rank=2)
  target = rectify_teacher_features(teacher_features, labels, anchors, center,
                                    lam)
  if g.shape != target.shape:
    raise ValueError(
        f"projected_student_features has shape {g.shape} but the rectified "
        f"teacher features have shape {target.shape} ([batch, anchors dim])")
  return jnp.sum(jnp.square(_common.l2_normalize(g) - target), axis=-1)


def warmup_scale(step: ArrayLike, warmup_steps: ArrayLike) -> Array:
  """Linear warm-up factor min(step / warmup_steps, 1), clipped at 0.

  Args:
    step: current step (or epoch), scalar, may be traced.
    warmup_steps: ramp length in the same unit; <= 0 gives 1 at once.

  Returns:
    float32 scalar in [0, 1].

  References:
    docs/method.md, "Averaging and the total" (linear ramp of the distillation weights);
    Zhao et al. 2022 (DKD warm-up).
  """
  step = jnp.asarray(step, jnp.float32)
  warmup = jnp.asarray(warmup_steps, jnp.float32)
  ramp = jnp.clip(step / jnp.maximum(warmup, 1e-12), 0.0, 1.0)
  return jnp.where(warmup > 0, ramp, 1.0)
