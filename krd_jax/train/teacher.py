"""The teacher: trained once per workdir (resumably), saved, checked and reused.

A student run reuses the saved teacher only if it has the configured model, class
count and training set; the teacher's per-class feature means on the training data
are what KRDistill's ETF anchors are aligned to.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from typing import Any, Callable

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from jax.sharding import Mesh

from krd_jax import checks
from krd_jax import priors
from krd_jax import sharding
from krd_jax.data import loader as loader_lib
from krd_jax.losses import registry
from krd_jax.train import checkpoints as ckpt_lib
from krd_jax.train import evaluation
from krd_jax.train import loop
from krd_jax.train import optim
from krd_jax.train import run_dir as run_dir_lib
from krd_jax.train import state as state_lib
from krd_jax.train import steps as steps_lib

log = logging.getLogger(__name__)


@dataclasses.dataclass
class Teacher:
  """A trained teacher, ready for student runs."""
  model: nn.Module
  variables: Any
  meta: dict
  summary: dict


def train_teacher(cfg: ml_collections.ConfigDict, ds, mesh: Mesh, run_dir: str) -> Teacher:
  """Trains the teacher of `cfg.teacher` on `ds` (resuming if interrupted) and saves it."""
  tcfg = cfg.teacher
  model = state_lib.build_model(tcfg, ds.num_classes,
                                state_lib.compute_dtype(cfg.compute_dtype))
  loader = loader_lib.DatasetLoader(ds, tcfg.batch_size, mesh, cfg.seed)
  tx = optim.make_optimizer(tcfg.optim, loader.steps_per_epoch, tcfg.epochs)
  rng_init, rng_train = jax.random.split(jax.random.PRNGKey(cfg.seed))
  variables = state_lib.init_variables(model, ds.image_shape, rng_init)
  state = sharding.replicate(state_lib.create_state(
      {"model": variables["params"]}, variables["batch_stats"], tx), mesh)

  loss_fn = registry.teacher_loss(tcfg.loss, ds.train_counts, **tcfg.loss_kwargs.to_dict())
  ones = np.ones(ds.num_classes, np.float32)
  drw = priors.effective_number_weights(ds.train_counts)
  drw_step = tcfg.drw_epoch * loader.steps_per_epoch

  def class_weights_fn(step):
    if tcfg.drw_epoch < 0:
      return jnp.asarray(ones)
    return jnp.where(step >= drw_step, drw, ones)

  preprocess = steps_lib.dataset_preprocess(cfg.data, ds, cfg.compute_dtype)
  step_fn = steps_lib.jit_train_step(
      steps_lib.make_teacher_step(model, loss_fn, tx, preprocess, class_weights_fn), mesh)
  eval_step = steps_lib.jit_eval_step(
      steps_lib.make_eval_step(model, preprocess, ds.num_classes), mesh)

  def eval_fn(s: state_lib.TrainState, split: str) -> dict:
    return evaluation.evaluate(eval_step, s.model_variables(), ds, split, mesh)

  # Only now is anything written: every check above runs first.
  run_dir_lib.check_run_dir(run_dir, run_dir_lib.role_json(cfg, "teacher"))
  state = loop.fit(run_dir=run_dir, cadence=loop.Cadence.of(cfg), epochs=tcfg.epochs,
                   state=state, step_fn=step_fn,
                   eval_fn=eval_fn, loader=loader, rng=rng_train,
                   desc=f"teacher {tcfg.model}", select_split=evaluation.select_split(ds))
  test, val = evaluation.test_and_val(lambda split: eval_fn(state, split), ds)
  meta = {"model": tcfg.model, "model_kwargs": tcfg.model_kwargs.to_dict(),
          "num_classes": ds.num_classes, "dataset": ds.name,
          "train_counts": np.asarray(ds.train_counts).tolist(), "loss": tcfg.loss,
          "test": test, "val": val}
  meta = ckpt_lib.save_teacher(run_dir, jax.device_get(state.model_variables()), meta)
  return Teacher(model, state.model_variables(), meta, test)


def load_teacher(tcfg: ml_collections.ConfigDict, dtype: str, ds, mesh: Mesh,
                 run_dir: str) -> Teacher:
  """Loads a saved teacher of `config.teacher` computing in `dtype`
  (`config.compute_dtype`), refusing one of another model, dataset or class count."""
  meta = ckpt_lib.read_teacher_meta(run_dir)
  if meta is None:
    raise FileNotFoundError(f"no complete teacher in {run_dir} (teacher.json missing)")
  mismatch = meta_mismatch(meta, expected_meta(tcfg, ds.num_classes, ds.train_counts))
  if mismatch:
    raise checks.InputError(f"config.teacher.checkpoint={run_dir!r}: the teacher there "
                            f"does not match; allowed: a teacher with {mismatch}")
  model = state_lib.build_model(tcfg, ds.num_classes, state_lib.compute_dtype(dtype))
  abstract = jax.eval_shape(lambda: state_lib.init_variables(model, ds.image_shape,
                                                             jax.random.PRNGKey(0)))
  abstract = jax.tree.map(
      lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=sharding.replicated(mesh)),
      abstract)
  variables = ckpt_lib.load_teacher(run_dir, abstract, meta.get("variables_sha256"))
  return Teacher(model, variables, meta, meta["test"])


def expected_meta(tcfg: ml_collections.ConfigDict, num_classes: int | None,
                  train_counts: Any = None) -> dict:
  """What a saved teacher's metadata must say to be reused by a run of `config.teacher`
  (None: unknown yet, not compared)."""
  return {"model": tcfg.model, "model_kwargs": tcfg.model_kwargs.to_dict(),
          "num_classes": num_classes,
          "train_counts": None if train_counts is None else np.asarray(train_counts).tolist()}


def meta_mismatch(meta: dict, expected: dict) -> str | None:
  """How a saved teacher's metadata differs from `expected`, in words, or None."""
  def shown(key, value):
    if key == "train_counts" and isinstance(value, list):
      return f"{len(value)} classes, {sum(value)} images"
    return repr(value)

  for key, value in expected.items():
    if value is not None and meta.get(key) != value:
      return (f"{key}={shown(key, value)} (config.teacher / config.data), not "
              f"{key}={shown(key, meta.get(key))} as saved")
  return None


def ensure_teacher(cfg: ml_collections.ConfigDict, ds, mesh: Mesh,
                   run_dir: str | None = None) -> tuple[Teacher, bool]:
  """The configured teacher and whether it was trained now: `teacher.checkpoint` if set,
  else run_dir (default workdir/teacher), trained there first if no complete teacher is
  saved yet, or rebuilt from the run's checkpoints if the saved one is corrupt.

  A teacher of our own folder is reused only by the configuration that trained it
  (`check_own_teacher`); `teacher.checkpoint` reuses any teacher of the configured model,
  classes and training set, on purpose."""
  run_dir = cfg.teacher.checkpoint or run_dir or os.path.join(cfg.workdir, "teacher")
  if cfg.teacher.checkpoint:
    return load_teacher(cfg.teacher, cfg.compute_dtype, ds, mesh, run_dir), False
  check_own_teacher(cfg, run_dir)
  if ckpt_lib.read_teacher_meta(run_dir) is not None:
    try:
      return load_teacher(cfg.teacher, cfg.compute_dtype, ds, mesh, run_dir), False
    except ckpt_lib.CorruptCheckpointError as error:
      # Our own teacher: its run's checkpoints can rebuild the final variables.
      log.warning("%s; rebuilding it from the teacher run's checkpoints", error)
  return train_teacher(cfg, ds, mesh, run_dir), True


def check_own_teacher(cfg: ml_collections.ConfigDict, run_dir: str) -> None:
  """InputError (one line naming what differs) where run_dir holds a teacher run of
  another configuration: its loss, epochs, optimiser, seed or data. Writes nothing."""
  run_dir_lib.check_same_run(run_dir, run_dir_lib.role_json(cfg, "teacher"))


def class_means(teacher: Teacher, ds, mesh: Mesh, preprocess: Callable,
                seed: int) -> np.ndarray:
  """Per-class mean of the teacher's features on the training set [C, d] (unaugmented
  where the dataset is in memory; one augmented epoch, in `seed`'s order, where it is
  streamed)."""
  step = steps_lib.jit_eval_step(
      steps_lib.make_feature_sum_step(teacher.model, preprocess, ds.num_classes), mesh)
  sums = counts = 0.0
  for batch in loader_lib.train_eval_batches(ds, evaluation.eval_batch_size(mesh), mesh,
                                             seed):
    s, c = step(teacher.variables, batch)
    sums, counts = sums + s, counts + c
  sums, counts = jax.device_get((sums, counts))
  return np.asarray(sums, np.float64) / np.asarray(counts, np.float64)[:, None]


def split_logits(teacher: Teacher, ds, mesh: Mesh, preprocess: Callable,
                 split: str = "val") -> tuple[np.ndarray, np.ndarray]:
  """The teacher's logits [N, C] (float64, inference mode) and labels [N] on `split`."""
  step = steps_lib.jit_eval_step(steps_lib.make_logits_step(teacher.model, preprocess), mesh)
  logits, labels = [], []
  for batch in loader_lib.eval_batches(ds, split, evaluation.eval_batch_size(mesh), mesh):
    z, y, mask = jax.device_get(step(teacher.variables, batch))
    real = np.asarray(mask).astype(bool)
    logits.append(np.asarray(z, np.float64)[real])
    labels.append(np.asarray(y)[real])
  return np.concatenate(logits), np.concatenate(labels)
