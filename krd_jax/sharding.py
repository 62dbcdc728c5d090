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
  return batch_sharding(mesh, 0)


def replicated(mesh: Mesh) -> NamedSharding:
  """Every device holds the whole array (parameters, optimiser state)."""
  return NamedSharding(mesh, P())


def splits_evenly(global_batch: Any, num_devices: int) -> tuple[bool, int]:
  """(whether `global_batch` is a positive integer multiple of `num_devices`, the
  nearest one that is): the one rule for every batch check."""
  ok = (isinstance(global_batch, int) and not isinstance(global_batch, bool)
        and global_batch > 0 and global_batch % num_devices == 0)
  near = global_batch if isinstance(global_batch, int) else 0
  return ok, max(num_devices, near // num_devices * num_devices)


def check_global_batch(global_batch: int, mesh: Mesh) -> None:
  """Raises ValueError unless the global batch splits evenly over the mesh."""
  n = mesh.devices.size
  ok, example = splits_evenly(global_batch, n)
  if not ok:
    raise ValueError(
        f"global batch size {global_batch} must be a positive multiple of the "
        f"{n} device(s) on the '{DATA_AXIS}' axis; use e.g. {example}")


def batch_sharding(mesh: Mesh, batch_axis: int = 0) -> NamedSharding:
  """Axis `batch_axis` split over `data` (leading axes before it, e.g. a seed axis,
  whole)."""
  return NamedSharding(mesh, P(*([None] * batch_axis), DATA_AXIS))


def process_rows(global_batch: int, mesh: Mesh) -> slice:
  """The rows of a global batch that this process feeds to its devices.

  With several processes each one reads and places only these rows; one process
  feeds them all (slice(0, global_batch)).

  Raises:
    ValueError: the batch does not split over the mesh, or this process's devices
      do not hold one contiguous block of the `data` axis.
  """
  check_global_batch(global_batch, mesh)
  if jax.process_count() == 1:
    return slice(0, global_batch)
  blocks = sorted({(s[0].start or 0, s[0].stop or global_batch) for s in
                   data_sharding(mesh).addressable_devices_indices_map(
                       (global_batch,)).values()})
  for (_, stop), (start, _) in zip(blocks, blocks[1:]):
    if stop != start:
      raise ValueError(f"this process's devices hold rows {blocks} of the batch, not one "
                       "block; order the mesh's devices by process")
  return slice(blocks[0][0], blocks[-1][1])


def shard_batch(batch: Any, mesh: Mesh, batch_axis: int = 0,
                global_batch: int | None = None) -> Any:
  """Places a host pytree of arrays on the mesh, axis `batch_axis` over `data`.

  Args:
    batch: numpy arrays. In a one-process run they hold the whole batch; with
      several processes, this process's rows (`process_rows`) of it.
    mesh: the device mesh.
    batch_axis: the axis split over `data` (1 for seed-stacked batches [S, B, ...]).
    global_batch: the whole batch's size; needed only with several processes.

  Returns:
    The same pytree of global `jax.Array`s.
  """
  sharding = batch_sharding(mesh, batch_axis)
  leaves = jax.tree_util.tree_leaves(batch)
  if jax.process_count() == 1:
    if leaves:
      check_global_batch(int(np.shape(leaves[0])[batch_axis]), mesh)
    return jax.device_put(batch, sharding)
  if global_batch is None:
    raise ValueError("shard_batch: pass global_batch in a multi-process run")
  check_global_batch(global_batch, mesh)

  def place(local: np.ndarray) -> jax.Array:
    shape = list(np.shape(local))
    shape[batch_axis] = global_batch
    return jax.make_array_from_process_local_data(sharding, local, tuple(shape))

  return jax.tree.map(place, batch)


def replicate(tree: Any, mesh: Mesh) -> Any:
  """Places a pytree on every device of the mesh."""
  return jax.device_put(tree, replicated(mesh))
