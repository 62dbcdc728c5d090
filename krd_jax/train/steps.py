"""Pure step functions: (state, batch, rng) -> (state, metrics), jitted data-parallel.

One `jax.jit` per step with the batch sharded over the `data` mesh axis and the state
replicated: XLA inserts the cross-device reductions, so BatchNorm statistics, losses
and gradients are global-batch quantities and the result equals a one-device step on
the same global batch.
"""

from __future__ import annotations

from typing import Any, Callable

import chex
import flax.linen as nn
import flax.struct
import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import Mesh

from krd_jax import losses
from krd_jax import sharding
from krd_jax.data.augment import augment, normalize
from krd_jax.models import layers
from krd_jax import methods
from krd_jax.train import state as state_lib
from krd_jax.train.state import TrainState

Batch = dict[str, jax.Array]
Metrics = dict[str, jax.Array]


def make_preprocess(mean: np.ndarray, std: np.ndarray, crop_pad: int, flip: bool,
                    dtype: jnp.dtype) -> Callable[[jax.Array, jax.Array | None], jax.Array]:
  """uint8 images -> augmented (when rng is given), normalised images in `dtype`."""
  mean = np.asarray(mean, np.float32)
  std = np.asarray(std, np.float32)

  def preprocess(images: jax.Array, rng: jax.Array | None) -> jax.Array:
    if rng is not None and (crop_pad > 0 or flip):
      images = augment(images, rng, pad=crop_pad, flip=flip)
    return normalize(images, mean, std).astype(dtype)

  return preprocess


def dataset_preprocess(data_cfg, ds, dtype: str
                       ) -> Callable[[jax.Array, jax.Array | None], jax.Array]:
  """`make_preprocess` with the dataset's mean / std, `config.data`'s augmentation and
  the compute dtype's name (`config.compute_dtype`)."""
  return make_preprocess(ds.mean, ds.std, data_cfg.crop_pad, data_cfg.flip,
                         state_lib.compute_dtype(dtype))


# The collection models `sow` their stage maps into (krd_jax.models: "stage1" ...,
# "stage1_preact" ...); collected only where a method reads them, so the others pay nothing.
STAGES = layers.STAGES


def stage_maps(collected: Any) -> dict[str, jax.Array]:
  """{name: map} from a model's collected intermediates (each sown once per call)."""
  return {name: values[0] for name, values in collected.get(STAGES, {}).items()}


def _apply_train(model: nn.Module, params: Any, batch_stats: Any, x: jax.Array,
                 stages: bool = False):
  """Model forward in training mode; returns ((logits, features), new batch_stats,
  stage maps or None)."""
  mutable = ["batch_stats", STAGES] if stages else ["batch_stats"]
  outputs, updates = model.apply({"params": params, "batch_stats": batch_stats}, x,
                                 train=True, mutable=mutable)
  return (outputs, updates.get("batch_stats", batch_stats),
          stage_maps(updates) if stages else None)


def _update(state: TrainState, tx: optax.GradientTransformation, grads: Any,
            batch_stats: Any, **fields: Any) -> TrainState:
  updates, opt_state = tx.update(grads, state.opt_state, state.params)
  return state.replace(step=state.step + 1, params=optax.apply_updates(state.params, updates),
                       batch_stats=batch_stats, opt_state=opt_state, **fields)


def _common_metrics(loss: jax.Array, logits: jax.Array, labels: jax.Array,
                    grads: Any) -> Metrics:
  return {
      "loss": loss,
      "accuracy": jnp.mean(jnp.argmax(logits, -1) == labels).astype(jnp.float32),
      "grad_norm": optax.global_norm(grads),
      # Counted, not checked, so the NaN guard costs no host sync per step.
      "nonfinite": (~jnp.isfinite(loss)).astype(jnp.int32),
  }


def make_teacher_step(model: nn.Module, loss_fn: Callable, tx: optax.GradientTransformation,
                      preprocess: Callable, class_weights_fn: Callable[[jax.Array], jax.Array]):
  """The teacher's step.

  Args:
    model: Flax module returning (logits, features).
    loss_fn: `registry.teacher_loss(...)`: (logits, labels, class_weights) -> scalar.
    tx: optimiser.
    preprocess: from `make_preprocess`.
    class_weights_fn: step -> [C] class weights (ones, or effective-number weights after
      the DRW switch epoch).

  Returns:
    step(state, batch, rng) -> (state, metrics); `rng` is the run's base key, folded
    with the step count inside.
  """
  def step(state: TrainState, batch: Batch, rng: jax.Array):
    # A key per step derived from the step count: a resumed run augments exactly as
    # the uninterrupted one would.
    x = preprocess(batch["image"], jax.random.fold_in(rng, state.step))
    labels = batch["label"]
    class_weights = class_weights_fn(state.step)

    def objective(params):
      (logits, _), batch_stats, _ = _apply_train(model, params["model"], state.batch_stats,
                                                 x)
      return loss_fn(logits, labels, class_weights), (logits, batch_stats)

    (loss, (logits, batch_stats)), grads = jax.value_and_grad(objective, has_aux=True)(
        state.params)
    return _update(state, tx, grads, batch_stats), _common_metrics(loss, logits, labels, grads)

  return step


@flax.struct.dataclass
class TeacherOutputs:
  """What the frozen teacher computed on a batch (each None without a teacher):
  logits [B, C], pooled features [B, d] and, where a student reads them, its stage
  maps {name: [B, H, W, C]}."""
  logits: jax.Array | None = None
  features: jax.Array | None = None
  stages: dict[str, jax.Array] | None = None


def teacher_outputs(teacher_model: nn.Module | None, variables: Any, x: jax.Array,
                    stages: bool = False) -> TeacherOutputs:
  """The frozen teacher in inference mode (its stage maps too, with `stages`); empty
  without one. No gradient ever reaches it."""
  if teacher_model is None:
    return TeacherOutputs()
  if not stages:
    logits, features = teacher_model.apply(variables, x, train=False)
    return jax.lax.stop_gradient(TeacherOutputs(logits, features))
  (logits, features), collected = teacher_model.apply(variables, x, train=False,
                                                      mutable=[STAGES])
  return jax.lax.stop_gradient(TeacherOutputs(logits, features, stage_maps(collected)))


# Folded into the step's key for what a method draws (CRD's negatives): independent of the
# augmentation key, which is the step's key itself.
METHOD_RNG_SALT = 1


def make_student_update(model: nn.Module, objective: methods.StudentObjective,
                        tx: optax.GradientTransformation, distill_warmup_steps: int):
  """One student's forward / backward and update, given the batch's (augmented,
  normalised) images and the teacher's outputs on them.

  Args:
    model: student Flax module returning (logits, features).
    objective: a `methods.StudentObjective` (`Method.objective(...)`); what its method
      trains of its own lives in params["method"] and reaches it as `outputs.params`,
      what it keeps untrained in `state.method_state` (`outputs.state`; its
      `next_state` gives the value after this step).
    tx: optimiser.
    distill_warmup_steps: distillation terms ramp linearly from 0 over these steps.

  Returns:
    update(state, x, batch, teacher: TeacherOutputs, rng) -> (state, metrics); `batch`
    gives "label" (and "index" where the source has stable sample indices), `rng` is
    the run's key (folded with the step inside).
  """
  def update(state: TrainState, x: jax.Array, batch: Batch, teacher: TeacherOutputs,
             rng: jax.Array):
    distill_scale = losses.warmup_scale(state.step, distill_warmup_steps)
    labels = batch["label"]
    method_rng = (jax.random.fold_in(jax.random.fold_in(rng, state.step), METHOD_RNG_SALT)
                  if objective.reads_rng else None)

    def loss_fn(params):
      (logits, features), batch_stats, stages = _apply_train(
          model, params["model"], state.batch_stats, x, bool(objective.student_stages))
      outputs = methods.StudentOutputs(
          student_logits=logits, student_features=features, params=params.get("method"),
          teacher_logits=teacher.logits, teacher_features=teacher.features, labels=labels,
          step=state.step, student_stages=stages, teacher_stages=teacher.stages,
          indices=batch.get("index"), rng=method_rng, state=state.method_state)
      loss, parts = objective.fn(outputs, distill_scale)
      new_state = None
      if objective.next_state is not None:
        new_state = jax.lax.stop_gradient(objective.next_state(outputs))
        # At trace time: a state that changed its tree, shapes or dtypes would recompile
        # the step and no longer match its checkpoints.
        chex.assert_trees_all_equal_shapes_and_dtypes(new_state, state.method_state)
      return loss, (logits, batch_stats, parts, new_state)

    (loss, (logits, batch_stats, parts, method_state)), grads = jax.value_and_grad(
        loss_fn, has_aux=True)(state.params)
    metrics = _common_metrics(loss, logits, labels, grads)
    metrics.update(parts)
    return _update(state, tx, grads, batch_stats, method_state=method_state), metrics

  return update


def example_outputs(model: nn.Module, variables: Any, teacher_model: nn.Module | None,
                    teacher_variables: Any, image_shape, batch: int = 2
                    ) -> methods.StudentOutputs:
  """The shapes (`jax.ShapeDtypeStruct`) of a batch's `StudentOutputs`, every field a
  method may read filled in, from one `eval_shape` pass: what a method initialises its
  parameters and state from."""
  def outputs(v, tv):
    x = jnp.zeros((batch, *image_shape), jnp.float32)
    (logits, features), _, stages = _apply_train(model, v["params"], v["batch_stats"], x,
                                                 stages=True)
    teacher = teacher_outputs(teacher_model, tv, x, stages=True)
    labels = jnp.zeros((batch,), jnp.int32)
    return methods.StudentOutputs(
        student_logits=logits, student_features=features, teacher_logits=teacher.logits,
        teacher_features=teacher.features, labels=labels, step=jnp.zeros((), jnp.int32),
        student_stages=stages, teacher_stages=teacher.stages, indices=labels,
        rng=jax.random.PRNGKey(0))

  return jax.eval_shape(outputs, variables, teacher_variables)


def make_student_step(model: nn.Module, teacher_model: nn.Module | None,
                      objective: methods.StudentObjective,
                      tx: optax.GradientTransformation, preprocess: Callable,
                      distill_warmup_steps: int):
  """The student's step: teacher forward in inference mode, student forward/backward.

  Args:
    model, objective, tx, distill_warmup_steps: as for `make_student_update`.
    teacher_model: teacher module (None for methods that need no teacher); its
      variables are `state.teacher`.
    preprocess: from `make_preprocess`.

  Returns:
    step(state, batch, rng) -> (state, metrics).
  """
  update = make_student_update(model, objective, tx, distill_warmup_steps)

  def step(state: TrainState, batch: Batch, rng: jax.Array):
    x = preprocess(batch["image"], jax.random.fold_in(rng, state.step))
    teacher = teacher_outputs(teacher_model, state.teacher, x,
                              bool(objective.teacher_stages))
    return update(state, x, batch, teacher, rng)

  return step


def make_eval_step(model: nn.Module, preprocess: Callable, num_classes: int):
  """variables, batch -> (correct per class [C], examples per class [C])."""
  def eval_step(variables: Any, batch: Batch):
    logits, _ = model.apply(variables, preprocess(batch["image"], None), train=False)
    return _per_class_sums(jnp.argmax(logits, -1), batch, num_classes)

  return eval_step


def _per_class_sums(predicted: jax.Array, batch: Batch, num_classes: int):
  """(correct predictions per class [..., C], real examples per class [C]) of a batch;
  `predicted` [..., B] may carry leading axes (one per tau); padding rows do not count."""
  mask = batch["mask"].astype(jnp.float32)
  correct = (predicted == batch["label"]).astype(jnp.float32) * mask
  per_class = lambda c: jax.ops.segment_sum(c, batch["label"], num_classes)
  for _ in range(predicted.ndim - 1):
    per_class = jax.vmap(per_class)
  return per_class(correct), jax.ops.segment_sum(mask, batch["label"], num_classes)


def make_post_hoc_eval_step(model: nn.Module, preprocess: Callable, num_classes: int,
                            log_prior: np.ndarray, taus: np.ndarray):
  """variables, batch -> (correct per tau and class [K, C], examples per class [C]) of
  the post-hoc logit-adjusted prediction argmax(z - tau log pi), for every tau at once.

  References:
    Menon et al. 2021, "Long-tail learning via logit adjustment", section 4 (post-hoc).
  """
  shift = jnp.asarray(np.asarray(taus, np.float32)[:, None] *
                      np.asarray(log_prior, np.float32)[None])  # [K, C]

  def eval_step(variables: Any, batch: Batch):
    logits, _ = model.apply(variables, preprocess(batch["image"], None), train=False)
    predicted = jnp.argmax(logits[None] - shift[:, None], -1)  # [K, B]
    return _per_class_sums(predicted, batch, num_classes)

  return eval_step


def make_logits_step(model: nn.Module, preprocess: Callable):
  """variables, batch -> (logits [B, C] in inference mode, labels [B], mask [B]); padding
  rows included (mask False). Labels and mask come back with the logits so that, jitted
  with replicated outputs, every process can read all three."""
  def logits_step(variables: Any, batch: Batch):
    logits, _ = model.apply(variables, preprocess(batch["image"], None), train=False)
    return logits, batch["label"], batch["mask"]

  return logits_step


def make_feature_sum_step(model: nn.Module, preprocess: Callable, num_classes: int):
  """variables, batch -> (per-class sum of features [C, F], per-class count [C]).

  Used once per student run to compute the teacher's class means on training data.
  """
  def feature_sum_step(variables: Any, batch: Batch):
    _, features = model.apply(variables, preprocess(batch["image"], None), train=False)
    mask = batch["mask"].astype(jnp.float32)
    return (jax.ops.segment_sum(features * mask[:, None], batch["label"], num_classes),
            jax.ops.segment_sum(mask, batch["label"], num_classes))

  return feature_sum_step


# XLA:CPU (jax 0.10.2) hands convolutions to YNNPACK by default; its own emitter runs this
# library's convolutions faster, 1.08-1.16x on the resnet32 -> resnet8 KD step and
# 1.23-1.38x on resnet32x4 -> resnet8x4 (two same-process A/Bs, 2-core Xeon with AVX-512:
# RESULTS.md; the retired script: git show 177365d:benchmarks/xla_cpu_options.py).
# Dots and reductions stay with YNNPACK.
CPU_COMPILER_OPTIONS = {
    "xla_cpu_experimental_ynn_fusion_type":
        "LIBRARY_FUSION_TYPE_INDIVIDUAL_DOT,LIBRARY_FUSION_TYPE_REDUCE",
}


def compiler_options(mesh: Mesh) -> dict[str, Any] | None:
  """XLA options every jitted step on `mesh` compiles with: CPU_COMPILER_OPTIONS on CPU
  meshes, XLA's defaults elsewhere."""
  return CPU_COMPILER_OPTIONS if mesh.devices.flat[0].platform == "cpu" else None


def jit_train_step(step: Callable, mesh: Mesh, donate: bool = True) -> Callable:
  """jit with the state replicated, the batch sharded over `data`, the rng replicated."""
  replicated = sharding.replicated(mesh)
  data = sharding.data_sharding(mesh)
  return jax.jit(step, in_shardings=(replicated, data, replicated),
                 out_shardings=(replicated, replicated),
                 donate_argnums=(0,) if donate else (),
                 compiler_options=compiler_options(mesh))


def jit_eval_step(step: Callable, mesh: Mesh) -> Callable:
  """jit for eval/feature steps: variables replicated, batch sharded, sums replicated."""
  return jax.jit(step, in_shardings=(sharding.replicated(mesh), sharding.data_sharding(mesh)),
                 out_shardings=sharding.replicated(mesh),
                 compiler_options=compiler_options(mesh))
