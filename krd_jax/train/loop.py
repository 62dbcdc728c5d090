"""Training loops for teachers and students: resumable, logged, evaluated.

Layout of a workdir:
  teacher/                 the teacher run (checkpoints/, final/, teacher.json)
  students/<name>/         one folder per student run (checkpoints/, final.json)
Each run folder also holds config.json, metrics.jsonl and TensorBoard summaries.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import signal
import socket
import time
from typing import Any, Callable

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from jax.sharding import Mesh
from tqdm.auto import tqdm

from krd_jax import distributed
from krd_jax import models
from krd_jax import priors
from krd_jax import sharding
from krd_jax import validate
from krd_jax.data import loader as loader_lib
from krd_jax.losses import registry
from krd_jax.train import checkpoints as ckpt_lib
from krd_jax.train import faults
from krd_jax.train import metrics as metrics_lib
from krd_jax.train import optim
from krd_jax.train import steps as steps_lib
from krd_jax.train.state import TrainState, create_state

EVAL_BATCH = 500
# Checkpoint metadata key: per-step metrics not yet logged when a preemption saved.
PENDING_METRICS = "pending_metrics"


log = logging.getLogger(__name__)


class NonFiniteLossError(RuntimeError):
  """The loss became NaN or Inf; the last good checkpoint was left untouched."""


class Preempted(Exception):
  """SIGTERM arrived: the run saved a checkpoint where it had progress, and stopped."""


class _Preemption:
  """What the SIGTERM handler knows: whether a fit loop can take the signal.

  Inside a fit loop (`armed`) the handler only records the request and the loop
  checkpoints at the next step boundary; elsewhere there is no progress to save, so
  the handler raises `Preempted` at once.
  """
  armed = False
  requested = False


def install_preemption_handler() -> None:
  """Makes SIGTERM stop the run cleanly: checkpoint at the next step, then raise
  `Preempted`. Call from the main thread (the CLI does); library use keeps the
  default SIGTERM behaviour."""
  _Preemption.requested = False

  def handler(signum, frame):  # pylint: disable=unused-argument
    _Preemption.requested = True
    if not _Preemption.armed:
      raise Preempted("stopped by SIGTERM outside training (no progress to save)")

  signal.signal(signal.SIGTERM, handler)


@dataclasses.dataclass
class Teacher:
  """A trained teacher, ready for student runs."""
  model: nn.Module
  variables: Any
  meta: dict
  summary: dict


# ----------------------------------------------------------------------------- helpers


def compute_dtype(cfg: ml_collections.ConfigDict) -> jnp.dtype:
  if cfg.compute_dtype not in ("float32", "bfloat16"):
    raise ValueError(f"compute_dtype={cfg.compute_dtype!r}; allowed: float32, bfloat16")
  return jnp.dtype(cfg.compute_dtype)


def build_model(role_cfg: ml_collections.ConfigDict, num_classes: int,
                dtype: jnp.dtype) -> nn.Module:
  return models.create_model(role_cfg.model, num_classes, dtype=dtype,
                             **role_cfg.model_kwargs.to_dict())


def init_variables(model: nn.Module, image_shape, rng: jax.Array) -> dict:
  """Model variables as `{"params", "batch_stats"}` (batch_stats empty without BN)."""
  dummy = jnp.zeros((1, *image_shape), jnp.float32)
  variables = model.init(rng, dummy, train=False)
  return {"params": variables["params"], "batch_stats": variables.get("batch_stats", {})}


def make_preprocess(cfg: ml_collections.ConfigDict, ds) -> Callable:
  return steps_lib.make_preprocess(ds.mean, ds.std, cfg.data.crop_pad, cfg.data.flip,
                                   compute_dtype(cfg))


def split_sums(eval_step: Callable, variables: Any, ds, split: str,
               mesh: Mesh) -> tuple[np.ndarray, np.ndarray]:
  """(correct, examples) per class of `variables` on `split`, as `eval_step` returns
  them ([C], or [S, C] for a seed-stacked step), summed over the split."""
  correct = total = 0.0
  batches = loader_lib.dataset_eval_batches(ds, split, eval_batch_size(mesh), mesh)
  for batch_arrays in batches:
    c, t = eval_step(variables, batch_arrays)
    correct, total = correct + c, total + t  # summed on device, fetched once
  return jax.device_get((correct, total))


def evaluate(eval_step: Callable, variables: Any, ds, split: str, mesh: Mesh) -> dict:
  """Accuracy summary (metrics.summarize) of `variables` on `split` ("test" or "val")."""
  correct, total = split_sums(eval_step, variables, ds, split, mesh)
  return metrics_lib.summarize(correct, total, ds.train_counts)


def eval_batch_size(mesh: Mesh) -> int:
  n = mesh.devices.size
  return max(n, EVAL_BATCH // n * n)


class _RunLog:
  """metrics.jsonl plus a TensorBoard event file where TensorBoard is installed.

  Events are framed by TensorBoard's own record writer into a plain file: its
  EventFileWriter imports TensorFlow when present, which adds seconds to every start,
  and a resumed run starts often. Only process 0 writes (the values are global).
  """

  def __init__(self, run_dir: str):
    self.path = os.path.join(run_dir, "metrics.jsonl")
    self.enabled = distributed.is_primary()
    self.events = None
    if not self.enabled:
      return
    _end_partial_line(self.path)
    try:
      from tensorboard.compat.proto import event_pb2, summary_pb2  # pylint: disable=g-import-not-at-top
      from tensorboard.summary.writer import record_writer  # pylint: disable=g-import-not-at-top
    except ImportError:  # TensorBoard is optional (absent on some GPU images).
      self.events = None
      return
    self._pb = (event_pb2, summary_pb2)
    name = f"events.out.tfevents.{int(time.time())}.{socket.gethostname()}.{os.getpid()}"
    self.events = record_writer.RecordWriter(open(os.path.join(run_dir, name), "ab"))
    self._add(event_pb2.Event(wall_time=time.time(), file_version="brain.Event:2"))

  def _add(self, event) -> None:
    self.events.write(event.SerializeToString())
    self.events.flush()

  def write(self, step: int, kind: str, values: dict) -> None:
    if not self.enabled:
      return
    with open(self.path, "a") as f:
      f.write(json.dumps({"step": step, "kind": kind, **values}) + "\n")
    if self.events is not None:
      event_pb2, summary_pb2 = self._pb
      tags = [summary_pb2.Summary.Value(tag=f"{kind}/{k}", simple_value=float(v))
              for k, v in values.items()
              if isinstance(v, (int, float)) and not math.isnan(v)]
      self._add(event_pb2.Event(wall_time=time.time(), step=step,
                                summary=summary_pb2.Summary(value=tags)))

  def close(self) -> None:
    if self.events is not None:
      self.events.close()


def _end_partial_line(path: str) -> None:
  """Terminates a last line a killed run left half written, so appends stay JSONL."""
  if os.path.exists(path) and os.path.getsize(path):
    with open(path, "rb+") as f:
      f.seek(-1, os.SEEK_END)
      if f.read(1) != b"\n":
        f.write(b"\n")


def write_json_atomic(path: str, value: Any, **kwargs) -> None:
  """Writes JSON via a temporary file and a rename: a kill leaves old or new, whole.

  Process 0 writes; every process returns once the file is in place.
  """
  with distributed.primary_writes(f"write {path}") as write:
    if write:
      tmp = path + ".tmp"
      with open(tmp, "w") as f:
        json.dump(value, f, **kwargs)
      os.replace(tmp, path)


def check_run_dir(run_dir: str, cfg_json: dict) -> None:
  """Refuses to resume a run folder that holds a run of another configuration."""
  path = os.path.join(run_dir, "config.json")
  exists = os.path.exists(path)
  # Every process decides on what it saw before process 0 may write the file.
  distributed.barrier(f"check {run_dir}")
  if exists:
    with open(path) as f:
      previous = json.load(f)
    if previous != cfg_json:
      changed = sorted(k for k in set(previous) | set(cfg_json)
                       if previous.get(k) != cfg_json.get(k))
      raise validate.InputError(
          f"config.workdir={os.path.dirname(os.path.normpath(run_dir))!r}: {run_dir} holds "
          f"a run with another configuration (differs in {changed}); allowed: another "
          "workdir, or delete that folder")
    return
  if distributed.is_primary():
    os.makedirs(run_dir, exist_ok=True)
  write_json_atomic(path, cfg_json, indent=1, sort_keys=True)


def _mean_metrics(history: list[dict]) -> dict:
  """Means over the window's steps (and over seeds, for seed-stacked metrics [S])."""
  fetched = jax.device_get(history)
  out = {k: float(np.mean([m[k] for m in fetched])) for k in fetched[0]}
  out["nonfinite"] = int(np.sum([m["nonfinite"] for m in fetched]))
  return out


# ----------------------------------------------------------------------------- the loop


def fit(*, run_dir: str, cfg: ml_collections.ConfigDict, role_cfg: ml_collections.ConfigDict,
        state: TrainState, step_fn: Callable, eval_fn: Callable[[TrainState, str], dict],
        loader: loader_lib.DatasetLoader, rng: jax.Array, desc: str,
        select_split: str) -> TrainState:
  """Runs (or resumes) the epochs of one run; returns the final state.

  Evaluates on `select_split` every `cfg.eval_every_epochs` and at checkpoints (the
  "best" checkpoint is ranked by that split's balanced accuracy); checkpoints every
  `cfg.checkpoint_every_steps` steps if set, else every `cfg.checkpoint_every_epochs`,
  and at the end. The loss is checked for NaN/Inf at each log and before each save,
  from metrics the step already returns, so a NaN state is never saved.

  Resume is exact: the state (step included) comes from the newest intact
  checkpoint, the loader's order is a function of (seed, epoch) and the step's
  augmentation key is the run key folded with the restored step.

  Raises:
    NonFiniteLossError: the loss became NaN/Inf (the last good checkpoint is kept).
    Preempted: SIGTERM arrived (after `install_preemption_handler`); a checkpoint
      of the current step was saved first.
    checkpoints.CheckpointWriteError: a save failed (e.g. a full disk).
  """
  checkpoints = ckpt_lib.RunCheckpoints(os.path.join(run_dir, "checkpoints"),
                                        keep=cfg.keep_checkpoints)
  run_log = _RunLog(run_dir)
  spe = loader.steps_per_epoch
  total = spe * role_cfg.epochs
  restored = checkpoints.restore_latest(state)
  # A preemption save carries the metrics of its unfinished log window, so the
  # resumed run logs the same means as an uninterrupted one.
  history: list[dict] = []
  if restored is not None:
    state, meta = restored
    history = [_metrics_from_json(m) for m in meta.get(PENDING_METRICS, [])]
  step = int(jax.device_get(state.step))
  every_steps = cfg.get("checkpoint_every_steps", 0)

  def last_good() -> str:
    return checkpoints.step_path(checkpoints.latest_step) or "none yet"

  def flush() -> None:
    if not history:
      return
    values = _mean_metrics(history)
    history.clear()
    if values["nonfinite"]:
      raise NonFiniteLossError(
          f"{desc}: loss became NaN/Inf at or before step {step}; last good checkpoint "
          f"(untouched): {last_good()}")
    run_log.write(step, "train", values)
    bar.set_postfix(loss=f"{values['loss']:.3f}", acc=f"{values['accuracy']:.2f}")

  def evaluate_and_log() -> dict:
    faults.point("eval")
    summary = eval_fn(state, select_split)
    run_log.write(step, select_split, {k: v for k, v in summary.items() if k != "per_class"})
    return summary

  def save(metrics: dict | None, **meta) -> None:
    checkpoints.save(state, {"epoch": step // spe if step % spe == 0 else step / spe,
                             **meta}, metrics=metrics)

  def stop_for_preemption() -> None:
    pending = jax.device_get(history)
    if any(m["nonfinite"] for m in pending):
      flush()  # Raises: a NaN state is never saved.
    if step > 0 and checkpoints.latest_step != step:
      # No evaluation: preemption grants seconds, not minutes.
      save(None, **{PENDING_METRICS: [{k: np.asarray(v).tolist() for k, v in m.items()}
                                      for m in pending]})
    raise Preempted(f"{desc}: stopped by SIGTERM at step {step}/{total}; checkpoint: "
                    f"{last_good()}")

  bar = tqdm(total=total, initial=step, desc=desc, unit="step", leave=False,
             # None: only on a terminal; one bar per job, not per process.
             disable=None if cfg.progress and distributed.is_primary() else True,
             dynamic_ncols=True)
  _Preemption.armed = True
  try:
    for epoch in range(step // spe, role_cfg.epochs):
      for batch in loader.epoch(epoch, start_step=step - epoch * spe):
        if _preemption_agreed(step, cfg.log_every_steps):
          stop_for_preemption()
        if faults.point("step") == "nan":
          state = _poison(state)
        state, metrics = step_fn(state, batch, rng)
        history.append(metrics)
        step += 1
        bar.update(1)
        if step % cfg.log_every_steps == 0:
          flush()
        if every_steps and step % every_steps == 0 and step < total:
          flush()
          save(evaluate_and_log())
      last = epoch + 1 == role_cfg.epochs
      save_now = last or (not every_steps and (epoch + 1) % cfg.checkpoint_every_epochs == 0)
      if save_now or (epoch + 1) % cfg.eval_every_epochs == 0:
        flush()
        summary = evaluate_and_log()
        if save_now and checkpoints.latest_step != step:
          save(summary)
  finally:
    _Preemption.armed = False
    bar.close()
    run_log.close()
    checkpoints.close()
  return state


def _preemption_agreed(step: int, every: int) -> bool:
  """Whether to stop for a SIGTERM before step `step`.

  One process: as soon as it arrived. Several: every process must stop at the same
  step (one that stopped alone would leave the others waiting in the next
  collective). `jax.distributed.initialize` installs JAX's own SIGTERM notifier,
  which agrees on a step with the other processes in the background; a signal our
  handler took instead (installed after the runtime started) is shared through a
  small all-gather every `every` steps.
  """
  if not distributed.is_multiprocess():
    return _Preemption.requested
  from jax.experimental import multihost_utils  # pylint: disable=g-import-not-at-top
  if multihost_utils.reached_preemption_sync_point(step):
    return True
  if step % every:
    return False
  return bool(np.max(multihost_utils.process_allgather(np.int32(_Preemption.requested))))


def _metrics_from_json(metrics: dict) -> dict:
  """A step's metrics as the step returned them: float32, and int32 counts (scalars,
  or lists for seed-stacked runs)."""
  def restore(v):
    is_int = all(isinstance(x, int) for x in np.ravel(v).tolist())
    return np.asarray(v, np.int32 if is_int else np.float32)
  return {k: restore(v) for k, v in metrics.items()}


def _poison(state: TrainState) -> TrainState:
  """NaN parameters (fault injection): the next loss is NaN. Keeps the shardings."""
  return state.replace(params=jax.tree.map(lambda x: x * jnp.nan, state.params))


# ----------------------------------------------------------------------------- teacher


def role_json(cfg: ml_collections.ConfigDict, role: str) -> dict:
  """The parts of the config that define a run of `role` (what resume must match)."""
  keys = ["seed", "compute_dtype", "data", role]
  out = {k: json.loads(cfg[k].to_json_best_effort()) if isinstance(
      cfg[k], ml_collections.ConfigDict) else cfg[k] for k in keys}
  if role == "student":
    out["method_kwargs"] = cfg.methods[cfg.student.method].to_dict()
  return json.loads(json.dumps(out, default=str))


def has_val(ds) -> bool:
  return ds.val_labels is not None and len(ds.val_labels) > 0


def select_split(ds) -> str:
  return "val" if has_val(ds) else "test"


def _loader(ds, batch_size: int, mesh: Mesh, seed: int) -> loader_lib.DatasetLoader:
  return loader_lib.DatasetLoader(ds, batch_size, mesh, seed)


def train_teacher(cfg: ml_collections.ConfigDict, ds, mesh: Mesh, run_dir: str) -> Teacher:
  """Trains the teacher of `cfg.teacher` on `ds` (resuming if interrupted) and saves it."""
  tcfg = cfg.teacher
  dtype = compute_dtype(cfg)
  model = build_model(tcfg, ds.num_classes, dtype)
  loader = _loader(ds, tcfg.batch_size, mesh, cfg.seed)
  tx = optim.make_optimizer(tcfg.optim, loader.steps_per_epoch, tcfg.epochs)
  rng_init, rng_train = jax.random.split(jax.random.PRNGKey(cfg.seed))
  variables = init_variables(model, ds.image_shape, rng_init)
  state = sharding.replicate(
      create_state({"model": variables["params"]}, variables["batch_stats"], tx), mesh)

  loss_fn = registry.teacher_loss(tcfg.loss, ds.train_counts, **tcfg.loss_kwargs.to_dict())
  ones = np.ones(ds.num_classes, np.float32)
  drw = priors.effective_number_weights(ds.train_counts)
  drw_step = tcfg.drw_epoch * loader.steps_per_epoch

  def class_weights_fn(step):
    if tcfg.drw_epoch < 0:
      return jnp.asarray(ones)
    return jnp.where(step >= drw_step, drw, ones)

  preprocess = make_preprocess(cfg, ds)
  step_fn = steps_lib.jit_train_step(
      steps_lib.make_teacher_step(model, loss_fn, tx, preprocess, class_weights_fn), mesh)
  eval_step = steps_lib.jit_eval_step(
      steps_lib.make_eval_step(model, preprocess, ds.num_classes), mesh)

  def eval_fn(s: TrainState, split: str) -> dict:
    return evaluate(eval_step, s.model_variables(), ds, split, mesh)

  # Only now is anything written: every check above runs first.
  check_run_dir(run_dir, role_json(cfg, "teacher"))
  state = fit(run_dir=run_dir, cfg=cfg, role_cfg=tcfg, state=state, step_fn=step_fn,
              eval_fn=eval_fn, loader=loader, rng=rng_train, desc=f"teacher {tcfg.model}",
              select_split=select_split(ds))
  summary = eval_fn(state, "test")
  val = eval_fn(state, "val") if has_val(ds) else None
  meta = {"model": tcfg.model, "model_kwargs": tcfg.model_kwargs.to_dict(),
          "num_classes": ds.num_classes, "dataset": ds.name,
          "train_counts": np.asarray(ds.train_counts).tolist(), "loss": tcfg.loss,
          "test": summary, "val": val}
  ckpt_lib.save_teacher(run_dir, jax.device_get(state.model_variables()), meta)
  return Teacher(model, state.model_variables(), meta, summary)


def load_teacher(cfg: ml_collections.ConfigDict, ds, mesh: Mesh, run_dir: str) -> Teacher:
  """Loads a saved teacher, refusing one of another model, dataset or class count."""
  meta = ckpt_lib.read_teacher_meta(run_dir)
  if meta is None:
    raise FileNotFoundError(f"no complete teacher in {run_dir} (teacher.json missing)")
  tcfg = cfg.teacher
  expected = {"model": tcfg.model, "model_kwargs": tcfg.model_kwargs.to_dict(),
              "num_classes": ds.num_classes,
              "train_counts": np.asarray(ds.train_counts).tolist()}
  for key, value in expected.items():
    if meta.get(key) != value:
      shown = value if key != "train_counts" else f"{len(value)} classes, {sum(value)} images"
      theirs = meta.get(key) if key != "train_counts" else \
          f"{len(meta[key])} classes, {sum(meta[key])} images"
      raise validate.InputError(f"config.teacher.checkpoint={run_dir!r}: the teacher there "
                                f"has {key}={theirs}; allowed: a teacher with {key}={shown}")
  model = build_model(tcfg, ds.num_classes, compute_dtype(cfg))
  abstract = jax.eval_shape(lambda: init_variables(model, ds.image_shape,
                                                   jax.random.PRNGKey(0)))
  abstract = jax.tree.map(
      lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=sharding.replicated(mesh)),
      abstract)
  variables = ckpt_lib.load_teacher(run_dir, abstract, meta.get("variables_sha256"))
  return Teacher(model, variables, meta, meta["test"])


def ensure_teacher(cfg: ml_collections.ConfigDict, ds, mesh: Mesh) -> Teacher:
  """The configured teacher: `teacher.checkpoint` if set, else workdir/teacher, trained
  there first if no complete teacher is saved yet."""
  run_dir = cfg.teacher.checkpoint or os.path.join(cfg.workdir, "teacher")
  if cfg.teacher.checkpoint:
    return load_teacher(cfg, ds, mesh, run_dir)
  if ckpt_lib.read_teacher_meta(run_dir) is not None:
    try:
      return load_teacher(cfg, ds, mesh, run_dir)
    except ckpt_lib.CorruptCheckpointError as error:
      # Our own teacher: its run's checkpoints can rebuild the final variables.
      log.warning("%s; rebuilding it from the teacher run's checkpoints", error)
  return train_teacher(cfg, ds, mesh, run_dir)


# ----------------------------------------------------------------------------- student


def teacher_class_means(teacher: Teacher, cfg, ds, mesh: Mesh) -> np.ndarray:
  """Per-class mean of the teacher's features on the training set (unaugmented where
  the dataset is in memory)."""
  preprocess = make_preprocess(cfg, ds)
  step = steps_lib.jit_eval_step(
      steps_lib.make_feature_sum_step(teacher.model, preprocess, ds.num_classes), mesh)
  sums = counts = 0.0
  size = eval_batch_size(mesh)
  rows = loader_lib.local_rows(size, mesh)
  if ds.streaming:
    # A streamed training set only comes augmented (tf.data); one epoch of it
    # estimates the class means.
    batches = ({**b, "mask": np.ones(len(b["label"]), bool)}
               for b in ds.train_stream(size, cfg.seed, 0, rows=rows))
  else:
    batches = loader_lib.host_eval_batches(ds.train_images, ds.train_labels, size, rows)
  for batch in loader_lib.prefetch_to_mesh(batches, mesh, global_batch=size):
    s, c = step(teacher.variables, batch)
    sums, counts = sums + s, counts + c
  sums, counts = jax.device_get((sums, counts))
  return np.asarray(sums, np.float64) / np.asarray(counts, np.float64)[:, None]


def _objective_kwargs(cfg, teacher: Teacher | None, ds, mesh) -> dict:
  """Method hyperparameters, with the ETF anchors and centre computed for KRDistill."""
  kwargs = cfg.methods[cfg.student.method].to_dict()
  if cfg.student.method == "krd":
    anchor = kwargs.pop("anchor")
    if kwargs["use_rrd"]:
      means = teacher_class_means(teacher, cfg, ds, mesh)
      if anchor == "aligned":
        anchors = priors.aligned_etf(means)
      elif anchor == "random":
        anchors = priors.simplex_etf(ds.num_classes, means.shape[1], seed=cfg.seed)
      else:
        raise ValueError(f"methods.krd.anchor={anchor!r}; allowed: aligned, random")
      kwargs.update(anchors=anchors, center=priors.balanced_center(means))
  return kwargs


def _evaluate_checkpoint(cfg, state: TrainState, run_dir: str, eval_fn: Callable,
                         ds) -> dict:
  """Test (and validation) summaries of the newest intact checkpoint in run_dir."""
  checkpoints = ckpt_lib.RunCheckpoints(os.path.join(run_dir, "checkpoints"),
                                        keep=cfg.keep_checkpoints)
  try:
    restored = checkpoints.restore_latest(state)
  finally:
    checkpoints.close()
  if restored is None:
    raise validate.InputError(f"no intact checkpoint to evaluate in {run_dir}/checkpoints")
  state = restored[0]
  return {"step": int(jax.device_get(state.step)), "test": eval_fn(state, "test"),
          "val": eval_fn(state, "val") if has_val(ds) else None}


@dataclasses.dataclass
class StudentSetup:
  """Everything a student run builds before its first step (nothing placed or written).

  Attributes:
    loader: its training batches.
    state: the fresh state at step 0, on the host, without the teacher.
    teacher_variables: the teacher's variables if the objective reads a teacher.
    rng: the run's training key (folded with the step inside the step).
    step: the unjitted (state, batch, rng) -> (state, metrics).
    eval_step: the unjitted evaluation step of the student model.
    method_kwargs: the objective's hyperparameters (ETF anchors included for krd).
  """
  loader: loader_lib.DatasetLoader
  state: TrainState
  teacher_variables: Any
  rng: jax.Array
  step: Callable
  eval_step: Callable
  method_kwargs: dict


def student_setup(cfg: ml_collections.ConfigDict, ds, mesh: Mesh, teacher: Teacher | None,
                  method_kwargs: dict | None = None) -> StudentSetup:
  """Builds the student run of `cfg.student` (shared by solo and parallel-seed runs).

  Args:
    cfg, ds, mesh, teacher: the run.
    method_kwargs: the objective's hyperparameters if already computed (seeds of one
      run share them: the teacher's class means take a pass over the training set).
  """
  scfg = cfg.student
  if method_kwargs is None:
    method_kwargs = _objective_kwargs(cfg, teacher, ds, mesh)
  objective = registry.student_objective(scfg.method, ds.train_counts, **method_kwargs)
  if objective.needs_teacher and teacher is None:
    raise ValueError(f"student.method={scfg.method!r} needs a teacher")
  dtype = compute_dtype(cfg)
  model = build_model(scfg, ds.num_classes, dtype)
  loader = _loader(ds, scfg.batch_size, mesh, cfg.seed)
  tx = optim.make_optimizer(scfg.optim, loader.steps_per_epoch, scfg.epochs)
  rng_init, rng_proj, rng_train = jax.random.split(jax.random.PRNGKey(cfg.seed + 1), 3)
  variables = init_variables(model, ds.image_shape, rng_init)
  params = {"model": variables["params"]}
  projector = None
  if objective.needs_projector:
    # g: student features -> the rectified teacher's space (a student parameter).
    projector = nn.Dense(method_kwargs["anchors"].shape[0], name="projector")
    _, student_features = model.apply(
        {"params": params["model"], "batch_stats": variables["batch_stats"]},
        jnp.zeros((1, *ds.image_shape)), train=False)
    params["projector"] = projector.init(rng_proj, student_features)["params"]
  teacher_model = teacher.model if objective.needs_teacher else None
  preprocess = make_preprocess(cfg, ds)
  return StudentSetup(
      loader=loader,
      state=create_state(params, variables["batch_stats"], tx),
      teacher_variables=teacher.variables if objective.needs_teacher else None,
      rng=rng_train,
      step=steps_lib.make_student_step(
          model, teacher_model, projector, objective, tx, preprocess,
          scfg.distill_warmup_epochs * loader.steps_per_epoch),
      eval_step=steps_lib.make_eval_step(model, preprocess, ds.num_classes),
      method_kwargs=method_kwargs)


def train_student(cfg: ml_collections.ConfigDict, ds, mesh: Mesh, teacher: Teacher | None,
                  run_dir: str, evaluate_only: bool = False) -> dict:
  """Distils (or trains, for teacher-free methods) the student of `cfg.student`.

  Args:
    cfg, ds, mesh, teacher: the run.
    run_dir: the student's run folder.
    evaluate_only: evaluate the newest intact checkpoint of run_dir as it is: no
      training, nothing written.

  Returns:
    The final test summary (metrics.summarize), also written to run_dir/final.json;
    with evaluate_only, {"step", "test", "val"} of the checkpoint.
  """
  if evaluate_only and not os.path.isdir(os.path.join(run_dir, "checkpoints")):
    raise validate.InputError(f"no student run to evaluate in {run_dir}; train it first "
                              "(python -m krd_jax student ...)")
  scfg = cfg.student
  setup = student_setup(cfg, ds, mesh, teacher)
  loader, rng_train = setup.loader, setup.rng
  # A private copy: the step donates its state, and the caller's teacher must survive
  # for the next student run.
  teacher_variables = (jax.tree.map(jnp.copy, setup.teacher_variables)
                       if setup.teacher_variables is not None else None)
  state = sharding.replicate(setup.state.replace(teacher=teacher_variables), mesh)
  step_fn = steps_lib.jit_train_step(setup.step, mesh)
  eval_step = steps_lib.jit_eval_step(setup.eval_step, mesh)

  def eval_fn(s: TrainState, split: str) -> dict:
    return evaluate(eval_step, s.model_variables(), ds, split, mesh)

  # Only now is anything written: every check above runs first.
  check_run_dir(run_dir, role_json(cfg, "student"))
  if evaluate_only:
    return _evaluate_checkpoint(cfg, state, run_dir, eval_fn, ds)
  state = fit(run_dir=run_dir, cfg=cfg, role_cfg=scfg, state=state, step_fn=step_fn,
              eval_fn=eval_fn, loader=loader, rng=rng_train,
              desc=f"student {scfg.model} {scfg.method}", select_split=select_split(ds))
  summary = eval_fn(state, "test")
  val = eval_fn(state, "val") if has_val(ds) else None
  faults.point("student_final")
  write_json_atomic(os.path.join(run_dir, "final.json"),
                     {"method": scfg.method, "model": scfg.model, "test": summary, "val": val})
  return summary
