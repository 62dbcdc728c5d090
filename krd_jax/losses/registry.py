"""Name -> loss builders, so a config can select a method by a string.

Builders run on the host once per run: they validate the class counts and the
hyper-parameters, precompute the per-class constants (`krd_jax.priors`) and
return pure functions of arrays that the train step calls inside jit.

Two families:
  * `teacher_loss(name, counts, **hparams)` -> fn(logits, labels,
    class_weights) -> scalar. `class_weights` [C] is the DRW schedule's
    current weights (ones before the switch epoch), applied through
    `balanced_mean`; "cb_ce" always uses its own effective-number weights.
  * `student_objective(name, counts, **hparams)` -> `StudentObjective`, whose
    fn(outputs, distill_scale) -> (scalar loss, metrics). `distill_scale` in
    [0, 1] multiplies every distillation term (the linear warm-up,
    `warmup_scale`, computed by the training loop).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple


import flax.struct
import jax
import jax.numpy as jnp
import numpy as np

from krd_jax import priors
from krd_jax.losses import kd
from krd_jax.losses import krdistill
from krd_jax.losses import long_tail

Array = jax.Array
TeacherLossFn = Callable[[Array, Array, Array], Array]
Metrics = dict[str, Array]

__all__ = [
    "STUDENT_METHODS",
    "StudentObjective",
    "StudentOutputs",
    "TEACHER_LOSSES",
    "student_methods",
    "student_objective",
    "teacher_loss",
    "teacher_losses",
]


@flax.struct.dataclass
class StudentOutputs:
  """What a student objective reads from one batch (a pytree).

  Attributes:
    student_logits: [B, C].
    projected_features: [B, D], the projector g applied to the student's
      features, or None when the objective does not need it.
    teacher_logits: [B, C] or None.
    teacher_features: [B, d] or None.
    labels: integer [B]; required (None only so the fields can keep this
      order with defaults).
  """
  student_logits: Array
  projected_features: Array | None = None
  teacher_logits: Array | None = None
  teacher_features: Array | None = None
  labels: Array | None = None


class StudentObjective(NamedTuple):
  """A built student objective.

  Attributes:
    fn: (outputs: StudentOutputs, distill_scale) -> (loss [], metrics), every
      metric a float32 scalar.
    needs_teacher: whether fn reads teacher_logits / teacher_features.
    needs_projector: whether fn reads projected_features (the student must
      own a trained projector to the anchors' dimension).
  """
  fn: Callable[[StudentOutputs, Array], tuple[Array, Metrics]]
  needs_teacher: bool
  needs_projector: bool


# ----------------------------------------------------------------- teachers


def _ce_teacher(counts: np.ndarray) -> TeacherLossFn:
  del counts
  def fn(logits, labels, class_weights):
    return long_tail.balanced_mean(
        long_tail.cross_entropy(logits, labels), labels, class_weights)
  return fn


def _cb_ce_teacher(counts: np.ndarray, beta: float = 0.9999) -> TeacherLossFn:
  weights = jnp.asarray(priors.effective_number_weights(counts, beta))
  def fn(logits, labels, class_weights):
    del class_weights  # Always class-balanced: that is the method.
    return jnp.mean(long_tail.class_balanced_ce(logits, labels, weights))
  return fn


def _ldam_teacher(counts: np.ndarray, max_margin: float = 0.5,
                  scale: float = 30.0) -> TeacherLossFn:
  margins = jnp.asarray(priors.ldam_margins(counts, max_margin))
  def fn(logits, labels, class_weights):
    return long_tail.balanced_mean(
        long_tail.ldam_loss(logits, labels, margins, scale), labels,
        class_weights)
  return fn


def _logit_adjusted_teacher(counts: np.ndarray,
                            tau: float = 1.0) -> TeacherLossFn:
  log_prior = jnp.asarray(priors.log_prior(counts))
  def fn(logits, labels, class_weights):
    return long_tail.balanced_mean(
        long_tail.logit_adjusted_ce(logits, labels, log_prior, tau), labels,
        class_weights)
  return fn


def _balanced_softmax_teacher(counts: np.ndarray) -> TeacherLossFn:
  log_prior = jnp.asarray(priors.log_prior(counts))
  def fn(logits, labels, class_weights):
    return long_tail.balanced_mean(
        long_tail.balanced_softmax_ce(logits, labels, log_prior), labels,
        class_weights)
  return fn


TEACHER_LOSSES: Mapping[str, Callable[..., TeacherLossFn]] = {
    "ce": _ce_teacher,
    "cb_ce": _cb_ce_teacher,
    "ldam": _ldam_teacher,
    "logit_adjusted": _logit_adjusted_teacher,
    "balanced_softmax": _balanced_softmax_teacher,
}


def teacher_losses() -> list[str]:
  """The names `teacher_loss` accepts.

  Returns:
    Sorted list of names.

  References:
    DESIGN.md section 2 (long-tail losses for teachers).
  """
  return sorted(TEACHER_LOSSES)


def teacher_loss(name: str, counts: Any, **hparams: Any) -> TeacherLossFn:
  """Builds a teacher (or plain long-tail) training loss by name.

  Args:
    name: one of `teacher_losses()`: "ce", "cb_ce" (beta), "ldam"
      (max_margin, scale), "logit_adjusted" (tau), "balanced_softmax".
    counts: training class counts [C].
    **hparams: the named loss's hyper-parameters; defaults as DESIGN.md
      section 2.

  Returns:
    fn(logits [B, C], labels [B], class_weights [C]) -> float32 scalar: the
    per-example loss averaged with `balanced_mean` under class_weights (the
    DRW weights; pass ones to switch them off). "cb_ce" ignores
    class_weights: it is always the mean of w_y * CE with its own
    effective-number weights (Cui et al.'s reduction).

  Raises:
    ValueError: unknown name or hyper-parameter (the message lists the
      allowed ones), or bad counts.

  References:
    DESIGN.md section 2; Cui et al. 2019 (cb_ce), Cao et al. 2019 (ldam,
    DRW), Menon et al. 2021 (logit_adjusted), Ren et al. 2020
    (balanced_softmax).
  """
  inner = _build(TEACHER_LOSSES, "teacher loss", name, counts, hparams)
  num_classes = len(counts)

  def fn(logits: Array, labels: Array, class_weights: Array) -> Array:
    _check_classes("logits", np.shape(logits), num_classes)
    if np.shape(class_weights) != (num_classes,):
      raise ValueError(f"class_weights must have shape [{num_classes}]; got "
                       f"{np.shape(class_weights)}")
    return inner(logits, labels, class_weights)

  return fn


# ----------------------------------------------------------------- students


def _ce_student(counts: np.ndarray):
  return _no_teacher(_student_ce(counts, "ce", 0.0))


def _logit_adjusted_student(counts: np.ndarray, tau: float = 1.0):
  return _no_teacher(_student_ce(counts, "logit_adjusted", tau))


def _balanced_softmax_student(counts: np.ndarray):
  return _no_teacher(_student_ce(counts, "balanced_softmax", 1.0))


def _no_teacher(ce_fn: Callable[[StudentOutputs], Array]) -> StudentObjective:
  def fn(out: StudentOutputs, distill_scale):
    return _total(ce_fn(out), {}, distill_scale)
  return StudentObjective(fn, needs_teacher=False, needs_projector=False)


def _kd_student(counts: np.ndarray, temperature: float = 4.0,
                kd_weight: float = 1.0, ce_weight: float = 1.0):
  ce_fn = _student_ce(counts, "ce", 0.0)
  def fn(out: StudentOutputs, distill_scale):
    ce = ce_fn(out)
    dist = jnp.mean(kd.kd_loss(out.student_logits,
                               _need(out, "teacher_logits"), temperature))
    return _total(ce_weight * ce, {"kd": kd_weight * dist}, distill_scale)
  return StudentObjective(fn, needs_teacher=True, needs_projector=False)


def _dkd_student(counts: np.ndarray, alpha: float = 1.0, beta: float = 8.0,
                 temperature: float = 4.0, ce_weight: float = 1.0):
  ce_fn = _student_ce(counts, "ce", 0.0)
  def fn(out: StudentOutputs, distill_scale):
    ce = ce_fn(out)
    dist = jnp.mean(kd.dkd_loss(
        out.student_logits, _need(out, "teacher_logits"), _labels(out), alpha,
        beta, temperature))
    return _total(ce_weight * ce, {"dkd": dist}, distill_scale)
  return StudentObjective(fn, needs_teacher=True, needs_projector=False)


def _bkd_student(counts: np.ndarray, temperature: float = 4.0,
                 beta_en: float = 0.9999, kd_weight: float = 1.0,
                 ce_weight: float = 1.0):
  weights = jnp.asarray(priors.effective_number_weights(counts, beta_en))
  ce_fn = _student_ce(counts, "ce", 0.0)
  def fn(out: StudentOutputs, distill_scale):
    ce = ce_fn(out)
    dist = jnp.mean(kd.bkd_loss(out.student_logits,
                                _need(out, "teacher_logits"), weights,
                                temperature))
    return _total(ce_weight * ce, {"bkd": kd_weight * dist}, distill_scale)
  return StudentObjective(fn, needs_teacher=True, needs_projector=False)


def _krd_student(counts: np.ndarray, alpha: float = 1.0, beta: float = 1.0,
                 lam: float = 0.5, rho: float = 0.0, tau: float = 1.0,
                 swap: bool = True, temperature: float = 4.0,
                 ce: str = "ce", ce_tau: float = 1.0, use_rrd: bool = True,
                 use_lrd: bool = True, anchors: Any = None,
                 center: Any = None):
  if ce not in ("ce", "logit_adjusted"):
    raise ValueError(f"krd: ce must be 'ce' or 'logit_adjusted'; got {ce!r}")
  if not 0.0 <= lam <= 1.0:
    raise ValueError(f"krd: lam must be in [0, 1]; got {lam}")
  if use_rrd:
    anchors, center = _check_anchors(anchors, center, len(counts))
  ce_fn = _student_ce(counts, ce, ce_tau)
  log_prior = jnp.asarray(priors.log_prior(counts))
  # rho = 0 is the plain mean; skip the weights so it is exactly that.
  weights = jnp.asarray(priors.balance_weights(counts, rho)) if rho else None

  def fn(out: StudentOutputs, distill_scale):
    labels = _labels(out)
    terms = {}
    if use_rrd:
      rrd = krdistill.representation_rectified_loss(
          _need(out, "projected_features"), _need(out, "teacher_features"),
          labels, anchors, center, lam)
      terms["rrd"] = alpha * long_tail.balanced_mean(rrd, labels, weights)
    if use_lrd:
      lrd = krdistill.logit_rectified_loss(
          out.student_logits, _need(out, "teacher_logits"), labels, log_prior,
          tau, temperature, swap)
      terms["lrd"] = beta * long_tail.balanced_mean(lrd, labels, weights)
    return _total(ce_fn(out), terms, distill_scale)

  return StudentObjective(fn, needs_teacher=use_rrd or use_lrd,
                          needs_projector=use_rrd)


STUDENT_METHODS: Mapping[str, Callable[..., StudentObjective]] = {
    "ce": _ce_student,
    "logit_adjusted": _logit_adjusted_student,
    "balanced_softmax": _balanced_softmax_student,
    "kd": _kd_student,
    "dkd": _dkd_student,
    "bkd": _bkd_student,
    "krd": _krd_student,
}


def student_methods() -> list[str]:
  """The names `student_objective` accepts.

  Returns:
    Sorted list of names.

  References:
    DESIGN.md sections 1 (KRDistill) and 2 (student baselines).
  """
  return sorted(STUDENT_METHODS)


def student_objective(name: str, counts: Any,
                      **hparams: Any) -> StudentObjective:
  """Builds a student training objective by name.

  Args:
    name: one of `student_methods()`:
      "ce"; "logit_adjusted" (tau); "balanced_softmax";
      "kd" (temperature=4, kd_weight=1, ce_weight=1);
      "dkd" (alpha=1, beta=8, temperature=4, ce_weight=1);
      "bkd" (temperature=4, beta_en=0.9999, kd_weight=1, ce_weight=1);
      "krd" (alpha=1 RRD weight, beta=1 LRD weight, lam=0.5, rho=0, tau=1,
      swap=True, temperature=4, ce="ce" | "logit_adjusted", ce_tau=1,
      use_rrd=True, use_lrd=True, anchors [D, C] and center [d], both
      required when use_rrd).
    counts: training class counts [C].
    **hparams: the method's hyper-parameters (above).

  Returns:
    A `StudentObjective`. Its fn returns (loss, metrics) with metrics "loss",
    "ce" (times ce_weight where there is one), one entry per distillation
    term ("kd", "dkd", "bkd", "rrd", "lrd"; already weighted and multiplied by
    distill_scale, so loss = ce + their sum) and "distill_scale".

  Raises:
    ValueError: unknown name or hyper-parameter (the message lists the
      allowed ones), bad counts, or missing anchors/center for krd with RRD.

  References:
    DESIGN.md sections 1 (KRDistill total loss) and 2 (baselines); Hinton et
    al. 2015; Zhao et al. 2022; Zhang et al. 2021.
  """
  objective = _build(STUDENT_METHODS, "student method", name, counts, hparams)
  num_classes = len(counts)
  inner = objective.fn

  def fn(outputs: StudentOutputs, distill_scale: Any) -> tuple[Array, Metrics]:
    _check_classes("StudentOutputs.student_logits",
                   np.shape(outputs.student_logits), num_classes)
    return inner(outputs, distill_scale)

  return objective._replace(fn=fn)


# ------------------------------------------------------------------ helpers


def _build(table: Mapping[str, Callable[..., Any]], kind: str, name: str,
           counts: Any, hparams: dict[str, Any]) -> Any:
  """Looks up `name`, checks hparams against the builder's signature."""
  if name not in table:
    raise ValueError(f"unknown {kind} {name!r}; allowed: {sorted(table)}")
  builder = table[name]
  allowed = list(inspect.signature(builder).parameters)[1:]  # After counts.
  unknown = sorted(set(hparams) - set(allowed))
  if unknown:
    raise ValueError(f"unknown hyper-parameter(s) {unknown} for {kind} "
                     f"{name!r}; allowed: {allowed}")
  return builder(priors.validate_counts(counts), **hparams)


def _student_ce(counts: np.ndarray, kind: str,
                tau: float) -> Callable[[StudentOutputs], Array]:
  """The student's own classification term: "ce", "logit_adjusted" (tau) or
  "balanced_softmax", averaged over the batch."""
  log_prior = jnp.asarray(priors.log_prior(counts))
  def ce_fn(out: StudentOutputs) -> Array:
    labels = _labels(out)
    if kind == "logit_adjusted":
      per_ex = long_tail.logit_adjusted_ce(out.student_logits, labels,
                                           log_prior, tau)
    elif kind == "balanced_softmax":
      per_ex = long_tail.balanced_softmax_ce(out.student_logits, labels,
                                             log_prior)
    else:
      per_ex = long_tail.cross_entropy(out.student_logits, labels)
    return jnp.mean(per_ex)
  return ce_fn


def _total(ce: Array, terms: dict[str, Array],
           distill_scale: Any) -> tuple[Array, Metrics]:
  """CE plus distill_scale times each distillation term, with metrics."""
  scale = jnp.asarray(distill_scale, jnp.float32)
  metrics = {"ce": ce, "distill_scale": scale}
  loss = ce
  for key, value in terms.items():
    metrics[key] = scale * value
    loss = loss + metrics[key]
  metrics["loss"] = loss
  return loss, metrics


def _check_classes(name: str, shape: tuple[int, ...], num_classes: int):
  if len(shape) != 2 or shape[1] != num_classes:
    raise ValueError(f"{name} must have shape [batch, {num_classes}] (one "
                     f"logit per counted class); got {shape}")


def _labels(out: StudentOutputs) -> Array:
  return _need(out, "labels")


def _need(out: StudentOutputs, field: str) -> Array:
  value = getattr(out, field)
  if value is None:
    raise ValueError(f"this objective needs StudentOutputs.{field}, got None")
  return value


def _check_anchors(anchors: Any, center: Any,
                   num_classes: int) -> tuple[Array, Array]:
  """anchors [D, C] and center [d] as float32 constants, checked on the host."""
  if anchors is None or center is None:
    raise ValueError(
        "krd with use_rrd=True needs anchors [D, C] and center [d] "
        "(krd_jax.priors.aligned_etf / simplex_etf and balanced_center); "
        "or pass use_rrd=False")
  anchors = np.asarray(anchors, np.float32)
  center = np.asarray(center, np.float32)
  if anchors.ndim != 2 or anchors.shape[1] != num_classes:
    raise ValueError(f"anchors must have shape [D, {num_classes}]; got "
                     f"{anchors.shape}")
  if center.ndim != 1 or center.shape[0] > anchors.shape[0]:
    raise ValueError(f"center must have shape [d] with d <= D = "
                     f"{anchors.shape[0]}; got {center.shape}")
  return jnp.asarray(anchors), jnp.asarray(center)
