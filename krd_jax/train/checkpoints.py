"""Orbax checkpoints: the latest K states plus the best by balanced accuracy, resumable.

A student run stores only what it trains (step, params, batch_stats, opt_state); the
teacher is saved once, as final inference variables beside a `teacher.json` that
student runs check before they reuse it.
"""

from __future__ import annotations

import json
import logging
import os
from typing import Any

import jax
import orbax.checkpoint as ocp
from orbax.checkpoint import checkpoint_managers

from krd_jax.train.state import TrainState

TEACHER_META = "teacher.json"
TEACHER_FINAL = "final"


class RunCheckpoints:
  """Periodic checkpoints of one run, kept by the latest-K plus best-1 policy.

  Args:
    directory: where step folders go (created if missing).
    keep: how many of the latest checkpoints to keep.
    best_metric: key of the metrics dict saved with each checkpoint that ranks "best".
  """

  def __init__(self, directory: str, keep: int = 2, best_metric: str = "balanced"):
    policy = checkpoint_managers.AnyPreservationPolicy([
        checkpoint_managers.LatestN(n=keep),
        checkpoint_managers.BestN(get_metric_fn=lambda m: m[best_metric], n=1),
    ])
    options = ocp.CheckpointManagerOptions(
        preservation_policy=policy, create=True,
        # Synchronous: a save returns only once the step folder is finalised, so a
        # later crash can never leave the latest checkpoint half written.
        enable_async_checkpointing=False)
    self.directory = os.path.abspath(directory)
    self.manager = ocp.CheckpointManager(self.directory, options=options)

  def save(self, state: TrainState, meta: dict, metrics: dict | None = None) -> int:
    """Saves the trainable part of `state` at its step; returns the step."""
    step = int(jax.device_get(state.step))
    self.manager.save(step, args=ocp.args.Composite(
        state=ocp.args.StandardSave(state.trainable()), meta=ocp.args.JsonSave(meta)),
        metrics=metrics, force=True)
    self.manager.wait_until_finished()
    return step

  def restore_latest(self, state: TrainState) -> tuple[TrainState, dict] | None:
    """Restores the newest readable checkpoint into `state`'s structure and shardings.

    A checkpoint that fails to read (truncated, garbled) is skipped with a warning
    naming it, and the one before it is tried.

    Returns:
      (state, meta) or None when there is no usable checkpoint.
    """
    target = jax.tree.map(ocp.utils.to_shape_dtype_struct, state.trainable())
    for step in sorted(self.manager.all_steps(), reverse=True):
      try:
        restored = self.manager.restore(step, args=ocp.args.Composite(
            state=ocp.args.StandardRestore(target), meta=ocp.args.JsonRestore()))
      except Exception as error:  # pylint: disable=broad-except
        logging.warning("skipping unreadable checkpoint %s/%s: %s", self.directory, step,
                        str(error).splitlines()[0][:200])
        continue
      return state.replace(**restored["state"]), dict(restored["meta"])
    return None

  @property
  def latest_step(self) -> int | None:
    return self.manager.latest_step()

  def close(self) -> None:
    self.manager.close()


def save_teacher(run_dir: str, variables: Any, meta: dict) -> None:
  """Saves the teacher's final inference variables once, then its metadata.

  The metadata file is written last, so its presence marks a complete teacher.
  """
  path = os.path.join(os.path.abspath(run_dir), TEACHER_FINAL)
  checkpointer = ocp.StandardCheckpointer()
  checkpointer.save(path, variables, force=True)
  checkpointer.wait_until_finished()
  tmp = os.path.join(run_dir, TEACHER_META + ".tmp")
  with open(tmp, "w") as f:
    json.dump(meta, f, indent=1)
  os.replace(tmp, os.path.join(run_dir, TEACHER_META))


def read_teacher_meta(run_dir: str) -> dict | None:
  """The metadata of a complete saved teacher, or None if there is none."""
  path = os.path.join(run_dir, TEACHER_META)
  if not os.path.exists(path):
    return None
  with open(path) as f:
    return json.load(f)


def load_teacher(run_dir: str, abstract_variables: Any) -> Any:
  """Restores teacher variables into the structure/shardings of `abstract_variables`."""
  path = os.path.join(os.path.abspath(run_dir), TEACHER_FINAL)
  return ocp.StandardCheckpointer().restore(path, abstract_variables)
