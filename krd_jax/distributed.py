"""Multi-process (multi-host) runs: JAX's distributed runtime, from config or environment.

One process per host (or per GPU under SLURM) runs the same command. After
`initialize`, `jax.devices()` lists every device of every process, so the `data`
mesh of `krd_jax.sharding.make_mesh` spans them all: the state is replicated on
every device, each process feeds only its rows of every global batch
(`sharding.process_rows`), XLA reduces gradients across processes, Orbax writes
checkpoints collectively, and only process 0 writes logs, reports and metadata.

Config (`cfg.distributed`):
  initialize: "auto" starts the runtime when the environment describes a
    multi-process job (`coordinator_address` set, JAX_COORDINATOR_ADDRESS, a
    SLURM job step of several tasks, a multi-worker Cloud TPU slice); "yes"
    always (JAX detects SLURM, Open MPI and TPU pods itself); "no" never.
  coordinator_address: "host:port" of process 0 ("": from the environment).
  num_processes, process_id: 0 / -1 to take them from the environment.
  cpu_collectives: collectives for CPU devices across processes ("gloo", "mpi").

Example (two processes on one machine, as the tests do):
  python -m krd_jax student --config.distributed.coordinator_address=127.0.0.1:4321 \
      --config.distributed.num_processes=2 --config.distributed.process_id=0 &
  python -m krd_jax student --config.distributed.coordinator_address=127.0.0.1:4321 \
      --config.distributed.num_processes=2 --config.distributed.process_id=1
"""

from __future__ import annotations

import contextlib
import os
from typing import Callable, Iterator, TypeVar

import jax
import ml_collections

from krd_jax import checks

MODES = ("auto", "yes", "no")
CPU_COLLECTIVES = ("gloo", "mpi")
T = TypeVar("T")


FIELDS = {
    "initialize": checks.Param("auto", "start JAX's distributed runtime: auto (where "
                               "the environment describes several processes), yes, no",
                               choices=MODES),
    "coordinator_address": checks.Param("", "'' or HOST:PORT of process 0"),
    "num_processes": checks.Param(0, "processes in the job; 0: from the environment",
                                  low=0),
    "process_id": checks.Param(-1, "this process's index; -1: from the environment",
                               low=-1),
    "cpu_collectives": checks.Param("gloo", "CPU collectives implementation",
                                    choices=CPU_COLLECTIVES),
}


def defaults() -> ml_collections.ConfigDict:
  """The `distributed` section of every config."""
  return ml_collections.ConfigDict({k: p.default for k, p in FIELDS.items()})


def environment_is_multiprocess(environ: dict[str, str] | None = None) -> bool:
  """Whether the environment describes a job of several processes.

  Recognised: JAX_COORDINATOR_ADDRESS; a SLURM step with SLURM_NTASKS > 1; a Cloud
  TPU slice with several workers (TPU_WORKER_HOSTNAMES lists more than one host).
  """
  env = os.environ if environ is None else environ
  if env.get("JAX_COORDINATOR_ADDRESS"):
    return True
  if "SLURM_JOB_ID" in env and "SLURM_PROCID" in env:
    try:
      return int(env.get("SLURM_NTASKS", env.get("SLURM_NPROCS", "1"))) > 1
    except ValueError:
      return False
  return "," in env.get("TPU_WORKER_HOSTNAMES", "")


def should_initialize(dist: ml_collections.ConfigDict,
                      environ: dict[str, str] | None = None) -> bool:
  """Whether `initialize(dist)` starts the runtime (see the module docstring)."""
  if dist.initialize == "no":
    return False
  return (dist.initialize == "yes" or bool(dist.coordinator_address)
          or environment_is_multiprocess(environ))


def initialize(dist: ml_collections.ConfigDict) -> bool:
  """Starts JAX's distributed runtime if `dist` (cfg.distributed) asks for it.

  Must run before anything touches a JAX device. Calling it again, or where the
  runtime is already up, does nothing.

  Args:
    dist: the config's `distributed` section (checked by `krd_jax.validate`).

  Returns:
    Whether this process is part of a multi-process job.
  """
  if jax.distributed.is_initialized():
    return jax.process_count() > 1
  if not should_initialize(dist):
    return False
  # CPU devices of different processes reach each other only through a collectives
  # library; without one a cross-process reduction on CPU fails at run time.
  jax.config.update("jax_cpu_collectives_implementation", dist.cpu_collectives)
  jax.distributed.initialize(
      coordinator_address=dist.coordinator_address or None,
      num_processes=dist.num_processes or None,
      process_id=dist.process_id if dist.process_id >= 0 else None)
  return jax.process_count() > 1


def is_primary() -> bool:
  """Process 0: the one that writes logs, reports and metadata files."""
  return jax.process_index() == 0


def is_multiprocess() -> bool:
  return jax.process_count() > 1


def barrier(name: str) -> None:
  """Waits until every process reaches `name` (no-op in a one-process run)."""
  if is_multiprocess():
    from jax.experimental import multihost_utils  # pylint: disable=g-import-not-at-top
    multihost_utils.sync_global_devices(name)


def primary_first(name: str, fn: Callable[[], T]) -> T:
  """Runs `fn` on process 0, then on the others.

  For work that fills a shared cache (preparing a tfds dataset, writing the data
  cache): the others then find it complete instead of racing to write it.
  """
  if is_primary():
    result = fn()
    barrier(name)
    return result
  barrier(name)
  return fn()


@contextlib.contextmanager
def primary_writes(name: str) -> Iterator[bool]:
  """`with primary_writes("x") as write: if write: ...`, then every process waits
  until the write is done, so none reads a file process 0 is still writing."""
  try:
    yield is_primary()
  finally:
    barrier(name)
