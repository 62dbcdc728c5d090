"""Teacher (plain long-tail) losses by name, so a config can select one by a string.

`teacher_loss(name, counts, **hparams)` runs on the host once per run: it validates
the class counts and the hyper-parameters, precomputes the per-class constants
(`krd_jax.priors`) and returns fn(logits, labels, class_weights) -> scalar, a pure
function the train step calls inside jit. `class_weights` [C] is the DRW schedule's
current weights (ones before the switch epoch), applied through `balanced_mean`;
"cb_ce" always uses its own effective-number weights.

Student methods (KRDistill and the distillation baselines) live in `krd_jax.methods`.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from krd_jax import priors
from krd_jax.losses import long_tail

Array = jax.Array
TeacherLossFn = Callable[[Array, Array, Array], Array]

__all__ = ["TEACHER_LOSSES", "TEACHER_LOSS_TITLES", "teacher_loss", "teacher_losses",
           "teacher_title"]


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


# As papers print them, for tables.
TEACHER_LOSS_TITLES: Mapping[str, str] = {
    "ce": "CE", "cb_ce": "class-balanced CE", "ldam": "LDAM",
    "logit_adjusted": "logit-adjusted CE", "balanced_softmax": "Balanced Softmax",
}


def teacher_title(name: str, drw_epoch: int = -1) -> str:
  """A teacher loss as tables print it ("CE", "LDAM-DRW", ...).

  Args:
    name: one of `teacher_losses()`.
    drw_epoch: the teacher's DRW switch epoch (-1: none); LDAM with one is
      LDAM-DRW, any other loss gets "+ DRW".

  Returns:
    The title.
  """
  title = TEACHER_LOSS_TITLES[name]
  if drw_epoch >= 0:
    title += "-DRW" if name == "ldam" else " + DRW"
  return title


def teacher_losses() -> list[str]:
  """The names `teacher_loss` accepts.

  Returns:
    Sorted list of names.

  References:
    docs/method.md, "The baselines" (long-tail losses for teachers).
  """
  return sorted(TEACHER_LOSSES)


def teacher_loss(name: str, counts: Any, **hparams: Any) -> TeacherLossFn:
  """Builds a teacher (or plain long-tail) training loss by name.

  Args:
    name: one of `teacher_losses()`: "ce", "cb_ce" (beta), "ldam"
      (max_margin, scale), "logit_adjusted" (tau), "balanced_softmax".
    counts: training class counts [C].
    **hparams: the named loss's hyper-parameters; defaults as their authors'
      (docs/method.md, "The baselines").

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
    docs/method.md, "The baselines"; Cui et al. 2019 (cb_ce), Cao et al. 2019 (ldam,
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


def _check_classes(name: str, shape: tuple[int, ...], num_classes: int):
  if len(shape) != 2 or shape[1] != num_classes:
    raise ValueError(f"{name} must have shape [batch, {num_classes}] (one "
                     f"logit per counted class); got {shape}")
