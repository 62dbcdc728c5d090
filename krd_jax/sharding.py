"""Device mesh helpers: one `data` axis, batch sharded over it, state replicated.

`jax.pmap` is in maintenance mode; jit with NamedSharding is its successor, so every
data-parallel computation in krd_jax is a plain `jax.jit` whose inputs carry these
shardings.
"""

from __future__ import annotations

from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

DATA_AXIS = "data"


def make_mesh(num_devices: int | None = None) -> Mesh:
  """A 1-D mesh named `data` over the first `num_devices` devices (all by default).

  Args:
    num_devices: how many devices to use; None for every device JAX sees
      (across processes in a multi-host run).

  Returns:
    A `jax.sharding.Mesh` with the single axis `data`.
  """
  devices = jax.devices()
  if num_devices is not None:
    if not 1 <= num_devices <= len(devices):
      raise ValueError(
          f"num_devices={num_devices} but JAX sees {len(devices)} device(s)")
    devices = devices[:num_devices]
  return Mesh(np.asarray(devices), (DATA_AXIS,))


def data_sharding(mesh: Mesh) -> NamedSharding:
  """Leading (batch) axis split over `data`, other axes whole."""
  return NamedSharding(mesh, P(DATA_AXIS))


def replicated(mesh: Mesh) -> NamedSharding:
  """Every device holds the whole array (parameters, optimiser state)."""
  return NamedSharding(mesh, P())


def check_global_batch(global_batch: int, mesh: Mesh) -> None:
  """Raises ValueError unless the global batch splits evenly over the mesh."""
  n = mesh.devices.size
  if global_batch <= 0 or global_batch % n:
    raise ValueError(
        f"global batch size {global_batch} must be a positive multiple of the "
        f"{n} device(s) on the '{DATA_AXIS}' axis; use e.g. {max(n, global_batch // n * n) or n}")


def shard_batch(batch: Any, mesh: Mesh) -> Any:
  """Places a host pytree of arrays on the mesh, batch axis over `data`."""
  sharding = data_sharding(mesh)
  leaves = jax.tree_util.tree_leaves(batch)
  if leaves:
    check_global_batch(int(np.shape(leaves[0])[0]), mesh)
  return jax.device_put(batch, sharding)


def replicate(tree: Any, mesh: Mesh) -> Any:
  """Places a pytree on every device of the mesh."""
  return jax.device_put(tree, replicated(mesh))
