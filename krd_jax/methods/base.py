"""What a student method is: its hyper-parameters, its needs and its objective.

A `Method` declares, once, everything the rest of the library asks about it: the
hyper-parameters with their defaults and allowed values (`Param`), whether it reads
a teacher, the per-run constants it computes from the teacher and the data (ETF
anchors from the teacher's class means, for KRDistill), whether those depend on the
seed (then a group of seeds cannot share one objective), and the objective it builds
from the pure losses in `krd_jax.losses`. The config's defaults, validation, the
train step, seed groups, the CLI and the ablation runner all read it from here.

An objective is `fn(outputs: StudentOutputs, distill_scale) -> (loss, metrics)`;
`distill_scale` in [0, 1] multiplies every distillation term (the linear warm-up,
`losses.warmup_scale`, computed in the step). The objective declares what it reads
beyond logits, pooled features and labels: named stage maps of student and teacher
(`student_stages`, `teacher_stages`) and a key (`reads_rng`); a method that reads the
batch's sample indices says so with `Method.sample_indices`. A method may own trainable
parameters besides the student's (KRDistill's projector, FitNet's regressor, ReviewKD's
fusion modules): `init_params`
makes them from the shapes of one batch's outputs (`StudentOutputs` of
`jax.ShapeDtypeStruct`s, one `eval_shape` pass), the train step keeps them beside the
student's and hands them back to `fn` as `StudentOutputs.params`. A method may keep
state it does not train (CRD's memory banks): `init_state` makes it from the same
shapes, `next_state(outputs)` gives its value after the step (`StudentOutputs.state`
holds the current one); the step checkpoints it and never hands it to the optimiser.
"""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import flax.linen as nn
import flax.struct
import jax
import jax.numpy as jnp
import numpy as np

from krd_jax import checks
from krd_jax import priors
from krd_jax.losses import kd as kd_losses
from krd_jax.losses import long_tail

Array = jax.Array
Metrics = dict[str, Array]


@flax.struct.dataclass
class StudentOutputs:
  """What a student objective reads from one batch (a pytree).

  Attributes:
    student_logits: [B, C].
    student_features: [B, d_s], the student's penultimate features.
    params: the method's own trainable parameters (what its objective's
      `init_params` made, trained with the student's); None when it owns none.
    teacher_logits: [B, C] or None.
    teacher_features: [B, d] or None.
    labels: integer [B]; required (None only so the fields can keep this
      order with defaults).
    step: the optimiser step (int32 scalar) of this batch, for objectives whose
      terms switch on at an epoch (BKD's class weights); None outside training.
    student_stages, teacher_stages: {name: [B, H, W, C]} stage maps the objective
      declared (`StudentObjective.student_stages` / `teacher_stages`), else None.
    indices: int32 [B], each example's index in the training set (where the objective
      reads them and the source has stable indices), else None.
    rng: a key of this step for what the objective draws (`reads_rng`), else None.
    state: the method's untrained state before this step (`init_state`), else None.
  """
  student_logits: Array
  student_features: Array | None = None
  params: Any = None
  teacher_logits: Array | None = None
  teacher_features: Array | None = None
  labels: Array | None = None
  step: Array | None = None
  student_stages: dict[str, Array] | None = None
  teacher_stages: dict[str, Array] | None = None
  indices: Array | None = None
  rng: Array | None = None
  state: Any = None


class StudentObjective(NamedTuple):
  """A built student objective.

  Attributes:
    fn: (outputs: StudentOutputs, distill_scale) -> (loss [], metrics), every
      metric a float32 scalar: "loss", "ce", "distill_scale" and one entry per
      distillation term (already weighted and scaled, so loss = ce + their sum).
    needs_teacher: whether fn reads teacher_logits / teacher_features.
    init_params: None when the method trains nothing of its own, else
      (rng, example: StudentOutputs of jax.ShapeDtypeStruct) -> the pytree of its
      trainable parameters, made from the shapes of one batch's outputs (teacher
      fields None without a teacher); fn reads them as `outputs.params`.
    init_state: None when the method keeps nothing between steps, else
      (rng, example) -> its initial untrained state (`outputs.state`).
    next_state: with init_state: outputs -> the state after this step (computed from
      the outputs before the update; never differentiated).
    student_stages, teacher_stages: the stage maps fn reads (`krd_jax.models.
      stage_names`), collected only where asked.
    reads_rng: fn reads `outputs.rng`.
  """
  fn: Callable[[StudentOutputs, Array], tuple[Array, Metrics]]
  needs_teacher: bool
  init_params: Callable[[jax.Array, StudentOutputs], Any] | None = None
  init_state: Callable[[jax.Array, StudentOutputs], Any] | None = None
  next_state: Callable[[StudentOutputs], Any] | None = None
  student_stages: tuple[str, ...] = ()
  teacher_stages: tuple[str, ...] = ()
  reads_rng: bool = False


ActsRule = checks.ActsRule
Param = checks.Param


@dataclasses.dataclass(frozen=True)
class RunContext:
  """What a method may read to compute its per-run constants.

  Attributes:
    num_classes: C.
    seed: the run's seed.
    class_means: () -> [C, d] float64, the teacher's per-class mean feature on
      the training set; computed (one pass over the training data) on first call.
    steps_per_epoch: optimiser steps per epoch (to turn epochs into steps).
    val_logits: () -> (logits [N, C] float64, labels [N]), the teacher's logits on
      the balanced validation split (computed on first call); None where the run
      has no validation split (or no teacher).
    train_counts: [C] training images per class.
    train_labels: [N] the training labels in sample-index order (in-memory sources;
      None where streamed).
  """
  num_classes: int
  seed: int
  class_means: Callable[[], np.ndarray]
  steps_per_epoch: int = 1
  val_logits: Callable[[], tuple[np.ndarray, np.ndarray]] | None = None
  train_counts: np.ndarray | None = None
  train_labels: np.ndarray | None = None


def _always(value):
  return lambda hparams: value


@dataclasses.dataclass(frozen=True)
class Method:
  """A student method, declared once (see the module docstring).

  Attributes:
    name: the config name (`student.method`, `methods.<name>`).
    title: the name papers print ("KRDistill", "KD", ...), for tables.
    params: hyper-parameter name -> Param; exactly the keys of `methods.<name>`.
    build: (counts [C], **hparams, **constants) -> StudentObjective; takes every
      param except those in `build_ignores` and `warmup_epochs` (read here, by
      `Method.warmup_epochs`), plus the constants.
    uses_teacher: hparams -> whether the objective reads the teacher.
    constants: (hparams, RunContext) -> dict of per-run constants for `build`
      (computed once per run, shared by a group of seeds).
    seed_dependence: hparams -> None, or why the constants differ per seed (then
      seeds run in turn, not as one vmapped group).
    build_ignores: params read only by `constants`, not passed to `build`.
    validation: hparams -> None, or why these hyper-parameters need a balanced
      validation split (checked with the config, before anything runs).
    stage_maps: hparams -> (student stage names, teacher stage names) the objective
      reads (`krd_jax.models.stage_names`); a model that offers none is refused with
      the config, before anything runs.
    sample_indices: hparams -> whether the objective reads the batch's sample indices
      (a streamed source, which has none, is refused with the config).
  """
  name: str
  title: str
  params: Mapping[str, Param]
  build: Callable[..., StudentObjective]
  uses_teacher: Callable[[Mapping[str, Any]], bool] = _always(False)
  constants: Callable[[Mapping[str, Any], RunContext], dict] = lambda hp, ctx: {}
  seed_dependence: Callable[[Mapping[str, Any]], str | None] = _always(None)
  build_ignores: tuple[str, ...] = ()
  validation: Callable[[Mapping[str, Any]], str | None] = _always(None)
  stage_maps: Callable[[Mapping[str, Any]], tuple[tuple[str, ...], tuple[str, ...]]] = (
      _always(((), ())))
  sample_indices: Callable[[Mapping[str, Any]], bool] = _always(False)

  def reads(self, hparams: Mapping[str, Any]) -> dict[str, Any]:
    """What a run of `hparams` reads beyond logits and pooled features: {"student":
    stage names, "teacher": stage names, "indices": bool}."""
    full = {**self.defaults(), **hparams}
    student, teacher = self.stage_maps(full)
    return {"student": tuple(student), "teacher": tuple(teacher) if self.needs_teacher(full)
            else (), "indices": bool(self.sample_indices(full))}

  def needs_validation(self, hparams: Mapping[str, Any]) -> str | None:
    return self.validation({**self.defaults(), **hparams})

  def defaults(self) -> dict[str, Any]:
    return {key: param.default for key, param in self.params.items()}

  def check(self, hparams: Mapping[str, Any], key: str | None = None) -> dict[str, Any]:
    """The hyper-parameters with defaults filled in, or InputError on the first bad
    one (named `config.<key>.<name>`, `key` defaulting to methods.<name>)."""
    key = key or f"methods.{self.name}"
    for name, value in hparams.items():
      if name not in self.params:
        checks.fail(f"{key}.{name}", value, f"keys of {key}: " + ", ".join(self.params))
      if not self.params[name].accepts(value):
        checks.fail(f"{key}.{name}", value, self.params[name].allowed())
    return {**self.defaults(), **hparams}

  def warmup_epochs(self, hparams: Mapping[str, Any], student_default: int) -> int:
    """Epochs the distillation terms ramp over: the method's own `warmup_epochs` where
    it sets one (>= 0), else the student-wide `student.distill_warmup_epochs`."""
    own = {**self.defaults(), **hparams}.get("warmup_epochs", -1)
    return student_default if own < 0 else own

  def idle_unless(self, name: str, hparams: Mapping[str, Any],
                  has_val_split: bool) -> str | None:
    """None where knob `name` acts in a run of `hparams` (defaults filled in) with or
    without a balanced validation split, else the setting that would make it act."""
    rule = self.params[name].acts
    return None if rule is None else rule({**self.defaults(), **hparams}, has_val_split)

  def needs_teacher(self, hparams: Mapping[str, Any]) -> bool:
    return bool(self.uses_teacher({**self.defaults(), **hparams}))

  def objective(self, counts: Any, hparams: Mapping[str, Any],
                constants: Mapping[str, Any] | None = None) -> StudentObjective:
    """Builds the objective for training counts [C] (hparams checked, defaults filled)."""
    hparams = self.check(hparams)
    ignored = {*self.build_ignores, "warmup_epochs"}
    kwargs = {k: v for k, v in hparams.items() if k not in ignored}
    allowed = list(inspect.signature(self.build).parameters)[1:]
    given = set(constants or {})
    # Constants must be build arguments, and none may shadow a hyper-parameter.
    extra = sorted((given - set(allowed)) | (given & set(kwargs)))
    if extra:
      allowed = list(self.params) + [k for k in allowed if k not in self.params]
      raise ValueError(f"unknown hyper-parameter(s) {extra} for student method "
                       f"{self.name!r}; allowed: {allowed}")
    counts = priors.validate_counts(counts)
    built = self.build(counts, **kwargs, **(constants or {}))
    inner, num_classes = built.fn, len(counts)

    def fn(outputs: StudentOutputs, distill_scale: Any) -> tuple[Array, Metrics]:
      shape = np.shape(outputs.student_logits)
      if len(shape) != 2 or shape[1] != num_classes:
        raise ValueError(f"StudentOutputs.student_logits must have shape [batch, "
                         f"{num_classes}] (one logit per counted class); got {shape}")
      return inner(outputs, distill_scale)

    return built._replace(fn=fn)


# ------------------------------------------------------------ building blocks of objectives


def student_ce(counts: np.ndarray, kind: str = "ce",
               tau: float = 1.0) -> Callable[[StudentOutputs], Array]:
  """The student's own classification term, averaged over the batch: "ce",
  "logit_adjusted" (CE(z + tau log pi)) or "balanced_softmax" (CE(z + log n))."""
  log_prior = jnp.asarray(priors.log_prior(counts))

  def ce_fn(out: StudentOutputs) -> Array:
    labels = need(out, "labels")
    if kind == "logit_adjusted":
      per_ex = long_tail.logit_adjusted_ce(out.student_logits, labels, log_prior, tau)
    elif kind == "balanced_softmax":
      per_ex = long_tail.balanced_softmax_ce(out.student_logits, labels, log_prior)
    else:
      per_ex = long_tail.cross_entropy(out.student_logits, labels)
    return jnp.mean(per_ex)

  return ce_fn


def total(ce: Array, terms: dict[str, Array], distill_scale: Any) -> tuple[Array, Metrics]:
  """CE plus distill_scale times each distillation term, with metrics."""
  scale = jnp.asarray(distill_scale, jnp.float32)
  metrics = {"ce": ce, "distill_scale": scale}
  loss = ce
  for key, value in terms.items():
    metrics[key] = scale * value
    loss = loss + metrics[key]
  metrics["loss"] = loss
  return loss, metrics


def teacher_free(ce_fn: Callable[[StudentOutputs], Array]) -> StudentObjective:
  """The objective of a method that is only its own CE term."""
  def fn(out: StudentOutputs, distill_scale):
    return total(ce_fn(out), {}, distill_scale)
  return StudentObjective(fn, needs_teacher=False)


def linear_map(width: int | None = None):
  """A trained linear map (flax.linen.Dense) a method owns, e.g. a projector of the
  student's features.

  Args:
    width: output width; None maps to the teacher's feature width.

  Returns:
    (init_params for `StudentObjective`, apply(params, features) -> [B, width]).
  """
  def init_params(rng: jax.Array, example: StudentOutputs) -> Any:
    teacher = example.teacher_features
    out = width if width is not None else (None if teacher is None else teacher.shape[-1])
    if out is None:
      raise ValueError("linear_map(width=None) maps to the teacher's features: it needs "
                       "a teacher")
    student_dim = need(example, "student_features").shape[-1]
    return nn.Dense(out).init(rng, jnp.zeros((1, student_dim), jnp.float32))["params"]

  def apply(params: Any, features: Array) -> Array:
    return nn.Dense(params["kernel"].shape[-1]).apply({"params": params}, features)

  return init_params, apply


def standardize_param() -> Param:
  """The logit-standardization switch of a logit distiller (KD, DKD)."""
  return Param(False, "z-score student and teacher logits before the tempered softmax "
               "(logit standardization, Sun et al. 2024)", changes_runs=False)


def standardized(out: StudentOutputs, standardize: bool) -> tuple[Array, Array]:
  """(student logits, teacher logits), each z-scored where `standardize` is on."""
  student, teacher = out.student_logits, need(out, "teacher_logits")
  if not standardize:
    return student, teacher
  return kd_losses.standardize_logits(student), kd_losses.standardize_logits(teacher)


def need(out: StudentOutputs, field: str) -> Array:
  """`out.<field>`, or a ValueError naming it when it is None."""
  value = getattr(out, field)
  if value is None:
    raise ValueError(f"this objective needs StudentOutputs.{field}, got None")
  return value


def acts_with(**settings: Any) -> ActsRule:
  """An `ActsRule`: the knob acts only where at least one of `settings` holds
  (`acts_with(use_rrd=True, use_lrd=True)`: with either term on). A tuple value holds
  where the knob's setting is any of its items (`acts_with(lrd_form=("decoupled",
  "target"))`)."""
  def holds(value: Any, wanted: Any) -> bool:
    return value in wanted if isinstance(wanted, tuple) else value == wanted

  def describe(key: str, wanted: Any) -> str:
    values = wanted if isinstance(wanted, tuple) else (wanted,)
    return " or ".join(f"{key}={value!r}" for value in values)

  def rule(hparams: Mapping[str, Any], has_val_split: bool) -> str | None:
    del has_val_split
    if any(holds(hparams[key], wanted) for key, wanted in settings.items()):
      return None
    return " or ".join(describe(key, wanted) for key, wanted in settings.items())
  return rule


# Shared hyper-parameter specs.
def temperature(default: float = 4.0, acts: ActsRule | None = None) -> Param:
  return Param(default, "softmax temperature T", low=0.0, low_open=True, acts=acts)


def weight(default: float = 1.0, doc: str = "", acts: ActsRule | None = None) -> Param:
  return Param(default, doc, low=0.0, acts=acts)


def warmup(acts: ActsRule | None = None, default: int = -1) -> Param:
  """A distillation method's own warm-up; -1 (the default) defers to the student's; 0
  where its authors ramp nothing (mdistiller's AT, PKT, RKD, FitNet)."""
  return Param(default, "epochs the distillation terms ramp over; -1: "
               "student.distill_warmup_epochs", low=-1, acts=acts)
