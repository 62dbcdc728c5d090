"""The training loop: step-indexed, each periodic action behind one "is it time" guard.

`fit` runs (or resumes) one run's steps. The step count is the clock: the epoch (for
the data order) is derived from it, and logging, evaluation, checkpoints and the
preemption check each happen when their guard says so. Resume is exact: the state
(step included) comes from the newest intact checkpoint, the batches of a step are a
function of (seed, epoch, position) and the step's augmentation key is the run key
folded with the step.
"""

from __future__ import annotations

import dataclasses

import os
from typing import Any, Callable

import jax
import ml_collections
import numpy as np
from tqdm.auto import tqdm

from krd_jax import distributed
from krd_jax.data import loader as loader_lib
from krd_jax.train import checkpoints as ckpt_lib
from krd_jax.train import hooks
from krd_jax.train import preemption
from krd_jax.train.preemption import Preempted  # noqa: F401  (raised by fit)
from krd_jax.train.run_log import RunLog
from krd_jax.train.state import TrainState

# Checkpoint metadata key: per-step metrics not yet logged when a preemption saved.
PENDING_METRICS = "pending_metrics"


class NonFiniteLossError(RuntimeError):
  """The loss became NaN or Inf; the last good checkpoint was left untouched."""


@dataclasses.dataclass(frozen=True)
class Cadence:
  """When a run logs, evaluates and checkpoints: the run-wide config fields `fit` reads
  (made once where a run starts, `Cadence.of(cfg)`)."""
  log_every_steps: int
  eval_every_epochs: int
  checkpoint_every_epochs: int
  checkpoint_every_steps: int = 0
  keep_checkpoints: int = 2
  progress: bool = True

  @classmethod
  def of(cls, cfg: ml_collections.ConfigDict) -> "Cadence":
    return cls(**{f.name: cfg[f.name] for f in dataclasses.fields(cls)})


def fit(*, run_dir: str, cadence: Cadence, epochs: int, state: TrainState,
        step_fn: Callable, eval_fn: Callable[[TrainState, str], dict], loader,
        rng: jax.Array, desc: str, select_split: str) -> TrainState:
  """Runs (or resumes) the `epochs` epochs of one run; returns the final state.

  Logs train metrics every `cadence.log_every_steps`; evaluates on `select_split` every
  `cadence.eval_every_epochs` and at checkpoints (the "best" checkpoint is ranked by that
  split's balanced accuracy); checkpoints every `cadence.checkpoint_every_steps` steps if
  set, else every `cadence.checkpoint_every_epochs`, and at the end. The loss is checked
  for NaN/Inf at each log and before each save, so a NaN state is never saved.

  Raises:
    NonFiniteLossError: the loss became NaN/Inf (the last good checkpoint is kept).
    Preempted: SIGTERM arrived (after `preemption.install_preemption_handler`); a
      checkpoint of the current step was saved first.
    checkpoints.CheckpointWriteError: a save failed (e.g. a full disk).
  """
  checkpoints = ckpt_lib.RunCheckpoints(os.path.join(run_dir, "checkpoints"),
                                        keep=cadence.keep_checkpoints)
  run_log = RunLog(run_dir)
  spe, every_steps = loader.steps_per_epoch, cadence.checkpoint_every_steps
  total = spe * epochs
  state, window = _restore(checkpoints, state)
  step = first = int(jax.device_get(state.step))
  bar = tqdm(total=total, initial=step, desc=desc, unit="step", leave=False,
             # None: only on a terminal; one bar per job, not per process.
             disable=None if cadence.progress and distributed.is_primary() else True,
             dynamic_ncols=True)

  def last_good() -> str:
    return checkpoints.step_path(checkpoints.latest_step) or "none yet"

  def log_train() -> None:
    if window:
      values = _mean_metrics(window)
      window.clear()
      if values["nonfinite"]:
        raise NonFiniteLossError(
            f"{desc}: loss became NaN/Inf at or before step {step}; last good checkpoint "
            f"(untouched): {last_good()}")
      run_log.write(step, "train", values)
      bar.set_postfix(loss=f"{values['loss']:.3f}", acc=f"{values['accuracy']:.2f}")

  def evaluate() -> dict:
    hooks.reached("eval")
    summary = eval_fn(state, select_split)
    run_log.write(step, select_split, {k: v for k, v in summary.items() if k != "per_class"})
    return summary

  def save(metrics: dict | None, **meta) -> None:
    epoch = step // spe if step % spe == 0 else step / spe
    checkpoints.save(state, {"epoch": epoch, **meta}, metrics=metrics)

  try:
    with preemption.armed():
      for batch in loader_lib.batches_from(loader, step, total):
        if preemption.agreed(step, cadence.log_every_steps, force_sync=step == first):
          if any(m["nonfinite"] for m in jax.device_get(window)):
            log_train()  # Raises: a NaN state is never saved.
          if step > 0 and checkpoints.latest_step != step:  # no eval: seconds, not minutes
            save(None, **{PENDING_METRICS: _metrics_to_json(window)})
          raise Preempted(f"{desc}: stopped by SIGTERM at step {step}/{total}; "
                          f"checkpoint: {last_good()}")
        state = hooks.reached("step", state)
        state, metrics = step_fn(state, batch, rng)
        window.append(metrics)
        step += 1
        bar.update(1)

        epoch_end, epoch = step % spe == 0, step // spe
        save_mid = bool(every_steps) and step % every_steps == 0 and step < total
        save_end = epoch_end and (step == total or (
            not every_steps and epoch % cadence.checkpoint_every_epochs == 0))
        eval_due = epoch_end and epoch % cadence.eval_every_epochs == 0
        if step % cadence.log_every_steps == 0 or save_mid or save_end or eval_due:
          log_train()
        if save_mid:
          save(evaluate())
        if save_end or eval_due:
          summary = evaluate()
          if save_end and checkpoints.latest_step != step:
            save(summary)
  finally:
    bar.close()
    run_log.close()
    checkpoints.close()
  return state


def _restore(checkpoints: ckpt_lib.RunCheckpoints,
             state: TrainState) -> tuple[TrainState, list[dict]]:
  """The newest intact checkpoint's state (or `state`), and the metrics of its
  unfinished log window: a preemption save carries them, so the resumed run logs the
  same means as an uninterrupted one."""
  restored = checkpoints.restore_latest(state)
  if restored is None:
    return state, []
  state, meta = restored
  return state, [_metrics_from_json(m) for m in meta.get(PENDING_METRICS, [])]


def _mean_metrics(window: list[dict]) -> dict:
  """Means over the window's steps (and over seeds, for seed-stacked metrics [S])."""
  fetched = jax.device_get(window)
  out = {k: float(np.mean([m[k] for m in fetched])) for k in fetched[0]}
  out["nonfinite"] = int(np.sum([m["nonfinite"] for m in fetched]))
  return out


def _metrics_to_json(window: list[dict]) -> list[dict]:
  return [{k: np.asarray(v).tolist() for k, v in m.items()} for m in jax.device_get(window)]


def _metrics_from_json(metrics: dict[str, Any]) -> dict:
  """A step's metrics as the step returned them: float32, and int32 counts (scalars,
  or lists for seed-stacked runs)."""
  def restore(v):
    is_int = all(isinstance(x, int) for x in np.ravel(v).tolist())
    return np.asarray(v, np.int32 if is_int else np.float32)
  return {k: restore(v) for k, v in metrics.items()}
