"""A student run: its method's objective, its state, its step, trained or evaluated.

`student_setup` is the one place a student run is built (solo runs here, seed groups
in `krd_jax.train.seeds`): the method (krd_jax.methods) supplies the objective and
its per-run constants, computed from the teacher and the data once.
"""

from __future__ import annotations

import dataclasses
import functools
import os
from typing import Any, Callable

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from jax.sharding import Mesh

from krd_jax import checks
from krd_jax import methods
from krd_jax import sharding
from krd_jax.data import loader as loader_lib
from krd_jax.train import checkpoints as ckpt_lib
from krd_jax.train import evaluation
from krd_jax.train import hooks
from krd_jax.train import loop
from krd_jax.train import optim
from krd_jax.train import run_dir as run_dir_lib
from krd_jax.train import state as state_lib
from krd_jax.train import steps as steps_lib
from krd_jax.train import teacher as teacher_lib
from krd_jax.train.state import TrainState


def method_constants(method: methods.Method, hparams: dict, seed: int, batch_size: int,
                     teacher: teacher_lib.Teacher | None, ds, mesh: Mesh,
                     preprocess: Callable) -> dict:
  """The per-run constants of `method` with `hparams` (KRDistill: its ETF anchors, its
  tau fitted on the validation split), for a student of `seed` and `batch_size`."""
  val_logits = None
  if teacher is not None and evaluation.has_val(ds):
    val_logits = functools.cache(functools.partial(
        teacher_lib.split_logits, teacher, ds, mesh, preprocess, "val"))
  context = methods.RunContext(
      num_classes=ds.num_classes, seed=seed,
      class_means=functools.cache(functools.partial(
          teacher_lib.class_means, teacher, ds, mesh, preprocess, seed)),
      steps_per_epoch=ds.num_train // batch_size, val_logits=val_logits,
      train_counts=ds.train_counts,
      # An in-memory source's labels, in the order of the sample indices it yields.
      train_labels=None if ds.streaming else np.asarray(ds.train_labels))
  return method.constants(method.check(hparams), context)


@dataclasses.dataclass
class StudentSetup:
  """Everything a student run builds before its first step (nothing placed or written).

  Attributes:
    loader: its training batches.
    state: the fresh state at step 0, on the host, without the teacher.
    teacher_variables: the teacher's variables if the objective reads a teacher.
    reads_teacher_stages: the objective reads the teacher's stage maps (a cohort
      collects them once for all).
    rng: the run's training key (folded with the step inside the step).
    step: the unjitted (state, batch, rng) -> (state, metrics).
    update: the unjitted student update of that step, given the images and the
      teacher's outputs (steps.make_student_update: a cohort shares the teacher's).
    eval_step: the unjitted evaluation step of the student model.
    constants: the method's per-run constants (ETF anchors for krd).
    model: the student's Flax module.
    preprocess: augmentation and normalisation of its images.
  """
  loader: loader_lib.DatasetLoader
  state: TrainState
  teacher_variables: Any
  reads_teacher_stages: bool
  rng: jax.Array
  step: Callable
  update: Callable
  eval_step: Callable
  constants: dict
  model: nn.Module
  preprocess: Callable


def student_setup(cfg: ml_collections.ConfigDict, ds, mesh: Mesh,
                  teacher: teacher_lib.Teacher | None,
                  constants: dict | None = None) -> StudentSetup:
  """Builds the student run of `cfg.student` (shared by solo and parallel-seed runs).

  Args:
    cfg, ds, mesh, teacher: the run.
    constants: the method's per-run constants if already computed (seeds of one
      run share them: the teacher's class means take a pass over the training set).
  """
  scfg = cfg.student
  method = methods.get(scfg.method)
  hparams = cfg.methods[scfg.method].to_dict()
  preprocess = steps_lib.dataset_preprocess(cfg.data, ds, cfg.compute_dtype)
  if constants is None:
    constants = method_constants(method, hparams, cfg.seed, scfg.batch_size, teacher, ds,
                                 mesh, preprocess)
  objective = method.objective(ds.train_counts, hparams, constants)
  if objective.needs_teacher and teacher is None:
    raise ValueError(f"student.method={scfg.method!r} needs a teacher")
  model = state_lib.build_model(scfg, ds.num_classes,
                                state_lib.compute_dtype(cfg.compute_dtype))
  loader = loader_lib.DatasetLoader(ds, scfg.batch_size, mesh, cfg.seed)
  tx = optim.make_optimizer(scfg.optim, loader.steps_per_epoch, scfg.epochs)
  rng_init, rng_method, rng_train = jax.random.split(jax.random.PRNGKey(cfg.seed + 1), 3)
  variables = state_lib.init_variables(model, ds.image_shape, rng_init)
  params = {"model": variables["params"]}
  teacher_model = teacher.model if objective.needs_teacher else None
  teacher_variables = teacher.variables if objective.needs_teacher else None
  method_state = None
  if objective.init_params is not None or objective.init_state is not None:
    example = steps_lib.example_outputs(model, variables, teacher_model, teacher_variables,
                                        ds.image_shape)
    rng_params, rng_state = jax.random.split(rng_method)
    if objective.init_params is not None:
      params["method"] = objective.init_params(
          rng_method if objective.init_state is None else rng_params, example)
    if objective.init_state is not None:
      method_state = objective.init_state(rng_state, example)
  warmup_steps = (method.warmup_epochs(hparams, scfg.distill_warmup_epochs) *
                  loader.steps_per_epoch)
  return StudentSetup(
      loader=loader,
      state=state_lib.create_state(params, variables["batch_stats"], tx,
                                   method_state=method_state),
      teacher_variables=teacher_variables,
      reads_teacher_stages=bool(objective.teacher_stages),
      rng=rng_train,
      step=steps_lib.make_student_step(model, teacher_model, objective, tx, preprocess,
                                       warmup_steps),
      update=steps_lib.make_student_update(model, objective, tx, warmup_steps),
      eval_step=steps_lib.make_eval_step(model, preprocess, ds.num_classes),
      constants=constants, model=model, preprocess=preprocess)


def scalar_constants(constants: dict) -> dict:
  """The method's scalar per-run constants (tau and temperature fitted on val), for
  the record; arrays (ETF anchors) are left out."""
  return {k: float(v) for k, v in constants.items() if np.ndim(v) == 0}


def private_teacher_copy(teacher_variables: Any) -> Any:
  """A copy the step may donate: the caller's teacher must survive for the next run."""
  if teacher_variables is None:
    return None
  return jax.tree.map(jnp.copy, teacher_variables)


def train_student(cfg: ml_collections.ConfigDict, ds, mesh: Mesh,
                  teacher: teacher_lib.Teacher | None, run_dir: str,
                  evaluate_only: bool = False) -> dict:
  """Distils (or trains, for teacher-free methods) the student of `cfg.student`.

  Args:
    cfg, ds, mesh, teacher: the run.
    run_dir: the student's run folder.
    evaluate_only: evaluate the newest intact checkpoint of run_dir as it is: no
      training, nothing written.

  Returns:
    The final test summary (metrics.summarize), also written to run_dir/final.json;
    with evaluate_only, {"step", "test", "val", "post_hoc"} of the checkpoint
    ("post_hoc": `evaluation.post_hoc_adjusted` of it).
  """
  if evaluate_only and not os.path.isdir(os.path.join(run_dir, "checkpoints")):
    raise checks.InputError(f"no student run to evaluate in {run_dir}; train it first "
                            "(python -m krd_jax student ...)")
  scfg = cfg.student
  setup = student_setup(cfg, ds, mesh, teacher)
  state = sharding.replicate(
      setup.state.replace(teacher=private_teacher_copy(setup.teacher_variables)), mesh)
  step_fn = steps_lib.jit_train_step(setup.step, mesh)
  eval_step = steps_lib.jit_eval_step(setup.eval_step, mesh)

  def eval_fn(s: TrainState, split: str) -> dict:
    return evaluation.evaluate(eval_step, s.model_variables(), ds, split, mesh)

  # Only now is anything written: every check above runs first.
  run_dir_lib.check_run_dir(run_dir, run_dir_lib.student_json(cfg, teacher))
  if evaluate_only:
    result = _evaluate_checkpoint(cfg.keep_checkpoints, state, run_dir, eval_fn, ds)
    result["post_hoc"] = evaluation.post_hoc_adjusted(
        setup.model, result.pop("variables"), setup.preprocess, ds, mesh)
    return result
  state = loop.fit(run_dir=run_dir, cadence=loop.Cadence.of(cfg), epochs=scfg.epochs,
                   state=state, step_fn=step_fn,
                   eval_fn=eval_fn, loader=setup.loader, rng=setup.rng,
                   desc=f"student {scfg.model} {scfg.method}",
                   select_split=evaluation.select_split(ds))
  test, val = evaluation.test_and_val(lambda split: eval_fn(state, split), ds)
  # Post-hoc logit adjustment of every student (tau chosen on val): the bar a
  # distillation method must beat includes the best plain student, adjusted.
  post_hoc = evaluation.post_hoc_adjusted(
      setup.model, state.model_variables(), setup.preprocess, ds, mesh)
  hooks.reached("student_final")
  write_final(run_dir, scfg, test, val, post_hoc, setup.constants)
  return test


def write_final(run_dir: str, scfg, test: dict, val: dict | None, post_hoc: dict,
                constants: dict, **extra: Any) -> None:
  """A finished student's final.json, as solo runs and seeds trained together write it:
  its method and model, test / val summaries, post-hoc adjustment, fitted constants."""
  run_dir_lib.write_json_atomic(
      os.path.join(run_dir, "final.json"),
      {"method": scfg.method, "model": scfg.model, "test": test, "val": val,
       "post_hoc": post_hoc, "fitted": scalar_constants(constants), **extra})


def _evaluate_checkpoint(keep_checkpoints: int, state: TrainState, run_dir: str,
                         eval_fn: Callable, ds) -> dict:
  """Test (and validation) summaries of the newest intact checkpoint in run_dir."""
  checkpoints = ckpt_lib.RunCheckpoints(os.path.join(run_dir, "checkpoints"),
                                        keep=keep_checkpoints)
  try:
    restored = checkpoints.restore_latest(state)
  finally:
    checkpoints.close()
  if restored is None:
    raise checks.InputError(f"no intact checkpoint to evaluate in {run_dir}/checkpoints")
  state = restored[0]
  test, val = evaluation.test_and_val(lambda split: eval_fn(state, split), ds)
  return {"step": int(jax.device_get(state.step)), "test": test, "val": val,
          "variables": state.model_variables()}
