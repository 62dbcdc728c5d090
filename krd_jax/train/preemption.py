"""SIGTERM, how preemption arrives: stop every process at one agreed step, cleanly.

Inside a fit loop (`armed`) the handler only records the request, and the loop
checkpoints and raises `Preempted` at the next step boundary every process agrees
on. Outside one there is no progress to save: a single process raises `Preempted`
at once; in a job of several processes the request is kept until the next point all
of them pass together (the start of the next fit), so no process stops alone while
the others wait for it in a collective.
"""

from __future__ import annotations

import contextlib
import signal

import numpy as np

from krd_jax import distributed


class Preempted(Exception):
  """SIGTERM arrived: the run saved a checkpoint where it had progress, and stopped."""


class _State:
  armed = False
  requested = False


def install_preemption_handler() -> None:
  """Makes SIGTERM stop the run cleanly (see the module docstring). Call from the main
  thread (the CLI does); library use keeps the default SIGTERM behaviour."""
  _State.requested = False

  def handler(signum, frame):  # pylint: disable=unused-argument
    _State.requested = True
    if not _State.armed and not distributed.is_multiprocess():
      raise Preempted("stopped by SIGTERM outside training (no progress to save)")

  signal.signal(signal.SIGTERM, handler)


def requested() -> bool:
  """Whether a SIGTERM has arrived since the handler was installed."""
  return _State.requested


@contextlib.contextmanager
def armed():
  """While inside: SIGTERM is recorded for the loop to act on at a step boundary."""
  _State.armed = True
  try:
    yield
  finally:
    _State.armed = False


def agreed(step: int, every: int, force_sync: bool = False) -> bool:
  """Whether to stop for a SIGTERM before step `step`.

  One process: as soon as it arrived. Several: every process must stop at the same
  step (one that stopped alone would leave the others waiting in the next
  collective). `jax.distributed.initialize` installs JAX's own SIGTERM notifier,
  which agrees on a step with the other processes in the background; a signal our
  handler took instead (installed after the runtime started) is shared through a
  small all-gather every `every` steps, and whenever `force_sync` (all processes
  call with it at the same point: the first step of a fit).
  """
  if not distributed.is_multiprocess():
    return _State.requested
  from jax.experimental import multihost_utils  # pylint: disable=g-import-not-at-top
  if multihost_utils.reached_preemption_sync_point(step):
    return True
  if step % every and not force_sync:
    return False
  return bool(np.max(multihost_utils.process_allgather(np.int32(_State.requested))))
