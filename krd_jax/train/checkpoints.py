"""Orbax checkpoints: the latest K states plus the best by balanced accuracy, resumable.

A student run stores only what it trains (step, params, batch_stats, opt_state); the
teacher is saved once, as final inference variables beside a `teacher.json` that
student runs check before they reuse it.

Integrity. Orbax commits a checkpoint atomically (written to a temporary folder,
renamed into place), so a crash never leaves a half-written step that looks
complete. It does not notice flipped bytes in the array files, though: such a
checkpoint restores silently wrong values. So every save also stores the sha256 of
the saved arrays in the checkpoint's own metadata (committed in the same rename),
and a restore recomputes it. A checkpoint that fails to read or to match is moved
to `<run>/checkpoints.unreadable/` with a warning naming it, and the previous one is
used.

Structure. A checkpoint whose tree differs from the state the run builds (a method
that gained parameters or state since, another model) is not corrupt: it belongs to
another run. It is refused (`CheckpointTreeMismatch`, one line naming the first paths
that differ); nothing is moved and nothing restarts.
"""

from __future__ import annotations

import contextlib
import errno
import gc
import hashlib
import json
import logging
import os
import shutil
import sys
import time
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp
from orbax.checkpoint import checkpoint_managers

from krd_jax import checks
from krd_jax import distributed
from krd_jax.train import hooks
from krd_jax.train.state import TrainState

TEACHER_META = "teacher.json"
TEACHER_FINAL = "final"
CHECKSUM_KEY = "state_sha256"
# Orbax's suffix of a step's temporary folder (atomicity_types.TMP_DIR_SUFFIX).
_TMP_SUFFIX = ".orbax-checkpoint-tmp"
# Errors that mean "the disk is full", as OSError errno or as text inside the
# errors TensorStore raises (it reports file-system errors as ValueError text).
_DISK_FULL_ERRNOS = (errno.ENOSPC, errno.EDQUOT)
_DISK_FULL_TEXT = ("no space left on device", "disk quota exceeded")

log = logging.getLogger(__name__)


class CheckpointWriteError(RuntimeError):
  """A checkpoint could not be written; the previous one is untouched."""


class CorruptCheckpointError(ValueError):
  """A saved checkpoint does not match the checksum stored with it."""


class CheckpointTreeMismatch(checks.InputError):
  """A saved checkpoint holds another tree than the run builds (another run's state)."""


def _path_name(path) -> str:
  """'params/method/kernel' for a key path of dicts, lists and (named) tuples alike: the
  saved metadata holds namedtuples as lists or dicts, the live state as attributes."""
  parts = []
  for key in path:
    for attr in ("key", "name", "idx"):
      if hasattr(key, attr):
        parts.append(str(getattr(key, attr)))
        break
    else:
      parts.append(str(key))
  return "/".join(parts)


def _leaf_specs(tree: Any) -> dict[str, tuple]:
  """path -> (shape, dtype) of every array leaf of a state or of a checkpoint's metadata."""
  leaves = jax.tree_util.tree_flatten_with_path(tree)[0]
  return {_path_name(path): (tuple(leaf.shape), np.dtype(leaf.dtype).name)
          for path, leaf in leaves if hasattr(leaf, "shape")}


def tree_difference(saved: Any, target: Any, limit: int = 3) -> str | None:
  """How a checkpoint's array tree (`saved`: Orbax metadata or arrays) differs from the
  state a run builds (`target`), in words naming the first `limit` paths; None if the
  two hold the same paths with the same shapes and dtypes."""
  old, new = _leaf_specs(saved), _leaf_specs(target)
  problems = [f"{p} only in the checkpoint" for p in sorted(set(old) - set(new))]
  problems += [f"{p} only in this run" for p in sorted(set(new) - set(old))]
  problems += [f"{p} is {old[p][0]} {old[p][1]} there, {new[p][0]} {new[p][1]} here"
               for p in sorted(set(old) & set(new)) if old[p] != new[p]]
  if not problems:
    return None
  more = f" (and {len(problems) - limit} more)" if len(problems) > limit else ""
  return "; ".join(problems[:limit]) + more


def is_disk_full(error: BaseException) -> bool:
  """Whether `error` (or an error it was raised from) reports a full disk."""
  while error is not None:
    if isinstance(error, OSError) and error.errno in _DISK_FULL_ERRNOS:
      return True
    if any(text in str(error).lower() for text in _DISK_FULL_TEXT):
      return True
    error = error.__cause__ or error.__context__
  return False


def _host_value(leaf: Any) -> np.ndarray:
  """A leaf's value on this host; a replicated array spanning hosts reads its local copy."""
  if isinstance(leaf, jax.Array) and not leaf.is_fully_addressable:
    leaf = leaf.addressable_data(0)  # Train states are replicated: any copy is whole.
  return np.ascontiguousarray(np.asarray(jax.device_get(leaf)))


def tree_sha256(tree: Any) -> str:
  """sha256 over the leaves of a pytree: their dtype, shape and bytes, in tree order."""
  digest = hashlib.sha256()
  for leaf in jax.tree_util.tree_leaves(tree):
    array = _host_value(leaf)
    digest.update(f"{array.dtype.str}{array.shape}".encode())
    digest.update(array.tobytes())
  return digest.hexdigest()


def _first_line(error: BaseException) -> str:
  text = str(error).strip().splitlines()
  return (text[0] if text else type(error).__name__)[:200]


@contextlib.contextmanager
def _quiet_orbax():
  """Silences the pages of tracebacks Orbax prints when a read or write fails.

  A failed save logs each worker thread's traceback at ERROR, a failed restore
  leaves coroutines whose errors Python reports as "Exception ignored in ...". The
  caller turns the failure into one message (a warning, or an error naming the
  checkpoint), so the pages only bury it.
  """
  loggers = [logging.getLogger(name) for name in ("absl", "asyncio")]
  levels, hook = [lg.level for lg in loggers], sys.unraisablehook
  for lg in loggers:
    lg.setLevel(logging.CRITICAL)
  sys.unraisablehook = lambda unraisable: None
  try:
    yield
  except Exception:
    gc.collect()  # Let the abandoned futures report now, while nobody listens.
    raise
  finally:
    for lg, level in zip(loggers, levels):
      lg.setLevel(level)
    sys.unraisablehook = hook


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
        # Preemption saves carry no metrics; they must not pile up outside keep-K.
        checkpoint_managers.BestN(get_metric_fn=lambda m: m[best_metric], n=1,
                                  keep_checkpoints_without_metrics=False),
    ])
    options = ocp.CheckpointManagerOptions(
        preservation_policy=policy, create=True,
        # Synchronous: a save returns only once the step folder is finalised, so a
        # later crash can never leave the latest checkpoint half written.
        enable_async_checkpointing=False,
        # Temporary folders of saves a crash interrupted are never complete; drop
        # them so repeated kills cannot fill the disk.
        cleanup_tmp_directories=True)
    self.directory = os.path.abspath(directory)
    # Handlers named up front: a manager opened on an existing run reads the saved
    # tree's metadata (check_tree) without saving first.
    self.manager = ocp.CheckpointManager(
        self.directory, options=options,
        item_handlers={"state": ocp.StandardCheckpointHandler(),
                       "meta": ocp.JsonCheckpointHandler()})

  def step_path(self, step: int | None) -> str | None:
    return None if step is None else os.path.join(self.directory, str(step))

  def save(self, state: TrainState, meta: dict, metrics: dict | None = None) -> int:
    """Saves the trainable part of `state` at its step; returns the step.

    Raises:
      CheckpointWriteError: the save failed (disk full, I/O error); its message
        names the previous checkpoint, which is left as it was.
    """
    step = int(jax.device_get(state.step))
    trainable = state.trainable()
    meta = {**meta, CHECKSUM_KEY: tree_sha256(trainable)}
    previous = self.latest_step
    try:
      with _quiet_orbax():
        self.manager.save(step, args=ocp.args.Composite(
            state=ocp.args.StandardSave(trainable), meta=ocp.args.JsonSave(meta)),
            metrics=metrics, force=True)
        self.manager.wait_until_finished()
    except Exception as error:  # pylint: disable=broad-except
      self._discard_partial(step)
      raise CheckpointWriteError(self._write_error_message(step, previous, error)) from error
    hooks.reached("saved")
    return step

  def _write_error_message(self, step: int, previous: int | None,
                           error: BaseException) -> str:
    full = is_disk_full(error)
    # TensorStore's own text is a page long; on a full disk the kind says it all.
    reason = "disk full: no space left on device" if full else _first_line(error)
    kept = (f"the previous checkpoint {self.step_path(previous)} is intact"
            if previous is not None else "there is no earlier checkpoint")
    hint = "free some space, then " if full else ""
    return (f"could not write checkpoint {self.step_path(step)} ({reason}); {kept}; "
            f"{hint}run the same command again to resume")

  def _discard_partial(self, step: int) -> None:
    """Removes the temporary folder a failed save left (it is never complete)."""
    prefix = f"{step}{_TMP_SUFFIX}"
    if not distributed.is_primary():
      return
    for name in os.listdir(self.directory) if os.path.isdir(self.directory) else ():
      if name.startswith(prefix):
        shutil.rmtree(os.path.join(self.directory, name), ignore_errors=True)

  def restore_latest(self, state: TrainState) -> tuple[TrainState, dict] | None:
    """Restores the newest readable, intact checkpoint into `state`'s structure.

    A checkpoint that fails to read (truncated, garbled) or whose arrays do not
    match their stored checksum is moved aside with a warning naming it, and the
    one before it is tried.

    Returns:
      (state, meta) or None when there is no usable checkpoint.

    Raises:
      CheckpointTreeMismatch: the newest checkpoint whose structure reads holds
        another tree than `state` (nothing is moved).
    """
    target = jax.tree.map(ocp.utils.to_shape_dtype_struct, state.trainable())
    for step in sorted(self.manager.all_steps(), reverse=True):
      self.check_tree(step, target)
      restored, problem = self._restore_checked(step, target)
      if problem is None:
        meta = {k: v for k, v in dict(restored["meta"]).items() if k != CHECKSUM_KEY}
        return state.replace(**restored["state"]), meta
      moved = self._quarantine(step)
      log.warning("skipping unreadable checkpoint %s (%s); moved to %s, resuming from "
                  "the previous one", self.step_path(step), problem, moved)
    return None

  def check_tree(self, step: int, target: Any) -> None:
    """Refuses checkpoint `step` if its saved tree is not `target`'s (a checkpoint whose
    metadata does not read is left to the restore, which quarantines it)."""
    try:
      with _quiet_orbax():
        saved = self.manager.item_metadata(step)["state"]
      saved = getattr(saved, "tree", saved)
    except Exception:  # pylint: disable=broad-except
      return
    if saved is None:
      return
    difference = tree_difference(saved, target)
    if difference is not None:
      raise CheckpointTreeMismatch(
          f"checkpoint {self.step_path(step)} holds another run's state ({difference}); "
          "allowed: the configuration that wrote it, or another workdir (or delete "
          f"{os.path.dirname(self.directory)} to start over)")

  def _restore_checked(self, step: int, target: Any) -> tuple[dict | None, str | None]:
    """(restored, None), or (None, what is wrong with checkpoint `step`)."""
    try:
      with _quiet_orbax():
        restored = self.manager.restore(step, args=ocp.args.Composite(
            state=ocp.args.StandardRestore(target), meta=ocp.args.JsonRestore()))
    except Exception as error:  # pylint: disable=broad-except
      return None, _first_line(error)
    expected = dict(restored["meta"] or {}).get(CHECKSUM_KEY)
    if expected is not None and expected != tree_sha256(restored["state"]):
      return None, "its arrays do not match the checksum saved with them"
    return restored, None

  def _quarantine(self, step: int) -> str:
    """Moves step folder `step` out of the manager's sight; returns where it went.

    Process 0 moves it; every process then reloads the manager's view.
    """
    aside = self.directory + ".unreadable"
    with distributed.primary_writes(f"quarantine {self.directory}/{step}") as write:
      if write:
        dest = self._move_aside(step, aside)
    self.manager.reload()
    return dest if write else aside

  def _move_aside(self, step: int, aside: str) -> str:
    os.makedirs(aside, exist_ok=True)
    dest = os.path.join(aside, f"{step}-{time.strftime('%Y%m%d-%H%M%S')}")
    suffix = 0
    while os.path.exists(dest + (f"-{suffix}" if suffix else "")):
      suffix += 1
    dest += f"-{suffix}" if suffix else ""
    os.replace(self.step_path(step), dest)
    return dest

  @property
  def latest_step(self) -> int | None:
    return self.manager.latest_step()

  def close(self) -> None:
    self.manager.close()


def save_teacher(run_dir: str, variables: Any, meta: dict) -> dict:
  """Saves the teacher's final inference variables once, then its metadata; returns
  the metadata as written.

  The metadata file is written last (atomically), so its presence marks a complete
  teacher; it holds the variables' checksum, which `load_teacher` verifies and student
  runs record.
  """
  path = os.path.join(os.path.abspath(run_dir), TEACHER_FINAL)
  checkpointer = ocp.StandardCheckpointer()
  checkpointer.save(path, variables, force=True)
  checkpointer.wait_until_finished()
  hooks.reached("teacher_final")
  meta = {**meta, "variables_sha256": tree_sha256(variables)}
  with distributed.primary_writes(f"teacher meta {run_dir}") as write:
    if write:  # one writer; the others continue once it is in place
      tmp = os.path.join(run_dir, TEACHER_META + ".tmp")
      with open(tmp, "w") as f:
        json.dump(meta, f, indent=1)
      os.replace(tmp, os.path.join(run_dir, TEACHER_META))
  return meta


def read_teacher_meta(run_dir: str) -> dict | None:
  """The metadata of a complete saved teacher, or None if there is none (no file, or
  one that is not a JSON object: a teacher whose metadata write never finished)."""
  try:
    with open(os.path.join(run_dir, TEACHER_META)) as f:
      meta = json.load(f)
  except (OSError, ValueError):
    return None
  return meta if isinstance(meta, dict) else None


def load_teacher(run_dir: str, abstract_variables: Any,
                 expected_sha256: str | None = None) -> Any:
  """Restores teacher variables into the structure/shardings of `abstract_variables`.

  Raises:
    CorruptCheckpointError: the variables do not read, or do not match
      `expected_sha256` (from teacher.json).
  """
  path = os.path.join(os.path.abspath(run_dir), TEACHER_FINAL)
  try:
    with _quiet_orbax():
      variables = ocp.StandardCheckpointer().restore(path, abstract_variables)
  except Exception as error:  # pylint: disable=broad-except
    raise CorruptCheckpointError(
        f"teacher variables in {path} are unreadable: {_first_line(error)}") from error
  if expected_sha256 is not None and tree_sha256(variables) != expected_sha256:
    raise CorruptCheckpointError(
        f"teacher variables in {path} do not match the checksum in {TEACHER_META}")
  return variables
