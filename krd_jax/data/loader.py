"""One road per batch: host batches from a dataset, to global sharded arrays, to the step.

A `LongTailDataset` yields host batches (`train_stream` / `test_stream`: numpy,
this process's rows only); `start_global` turns them into global `jax.Array`s
sharded over the `data` mesh axis and keeps a few in flight; `DatasetLoader` (training
epochs, `batches_from` across epochs), `eval_batches` and `train_eval_batches` are
the three ways the library asks for batches. The host only gathers uint8 images by
index (cheap); augmentation runs on device inside the jitted step
(`krd_jax.data.augment`). Orders are pure functions of (seed, epoch), so a run
resumed from a checkpoint at (epoch, step) sees exactly the batches it would have seen.
"""

from __future__ import annotations

import collections
import itertools
import math
from typing import Iterable, Iterator

import numpy as np
from jax.sharding import Mesh

from krd_jax import sharding

Batch = dict[str, np.ndarray]


def epoch_permutation(num_examples: int, seed: int, epoch: int) -> np.ndarray:
  """The example order of one epoch, a function of (seed, epoch) only.

  Args:
    num_examples: N.
    seed: non-negative run seed.
    epoch: non-negative epoch index.

  Returns:
    np.int64 [N], a permutation of range(N).
  """
  if int(seed) < 0 or int(epoch) < 0:
    raise ValueError(f"seed and epoch must be >= 0, got seed={seed}, epoch={epoch}")
  rng = np.random.default_rng([int(seed), int(epoch)])
  return rng.permutation(int(num_examples)).astype(np.int64)


def _check_arrays(images: np.ndarray, labels: np.ndarray) -> None:
  if len(images) != len(labels):
    raise ValueError(f"{len(images)} images but {len(labels)} labels")


def host_epoch_batches(images: np.ndarray, labels: np.ndarray, global_batch: int,
                       seed: int, epoch: int, start_step: int = 0,
                       drop_last: bool = True,
                       rows: slice | None = None) -> Iterator[Batch]:
  """Numpy batches {"image", "label", "index"} of one epoch in `epoch_permutation` order
  ("index": each example's row in the training arrays, the stable sample index CRD's
  memory bank is keyed by).

  Args:
    images, labels: the whole training set.
    global_batch: examples per batch.
    seed, epoch: fix the order.
    start_step: first batch to yield (resume mid-epoch).
    drop_last: drop an incomplete last batch; when False it is completed with
      examples from the start of the same epoch's order, so every batch has the
      same shape (no recompilation) and every example is seen at least once.
    rows: only these rows of every batch (a process's share in a multi-process
      run, `sharding.process_rows`); the others are never read.
  """
  _check_arrays(images, labels)
  if global_batch <= 0:
    raise ValueError(f"global batch size must be positive, got {global_batch}")
  n = len(labels)
  order = epoch_permutation(n, seed, epoch)
  steps = n // global_batch if drop_last else math.ceil(n / global_batch)
  if not drop_last:
    order = np.resize(order, steps * global_batch)  # np.resize repeats from the start.
  for step in range(int(start_step), steps):
    idx = np.sort(order[step * global_batch:(step + 1) * global_batch])
    # Sorted indices read memory in order; the batch's order inside does not matter
    # to the loss, and it stays a function of (seed, epoch, step).
    if rows is not None:
      idx = idx[rows]
    yield {"image": images[idx], "label": np.asarray(labels[idx], np.int32),
           "index": idx.astype(np.int32)}


def host_eval_batches(images: np.ndarray, labels: np.ndarray, batch: int,
                      rows: slice | None = None) -> Iterator[Batch]:
  """Numpy batches {"image", "label", "mask"} covering every example exactly once.

  The last batch is padded with zero images (label 0) to `batch` examples and
  "mask" (bool [B]) is False on the padding, so shapes never change. With `rows`,
  only those rows of every batch are read and yielded (a process's share).
  """
  _check_arrays(images, labels)
  if batch <= 0:
    raise ValueError(f"batch size must be positive, got {batch}")
  n = len(labels)
  for start in range(0, n, batch):
    stop = min(start + batch, n)
    lo, hi = (0, batch) if rows is None else (rows.start, rows.stop)
    # Global positions lo..hi of the padded batch; those past `stop` are padding.
    real = max(0, min(stop, start + hi) - (start + lo))
    image = np.zeros((hi - lo, *images.shape[1:]), images.dtype)
    label = np.zeros((hi - lo,), np.int32)
    image[:real] = images[start + lo:start + lo + real]
    label[:real] = labels[start + lo:start + lo + real]
    yield {"image": image, "label": label, "mask": np.arange(hi - lo) < real}


def start_global(batches: Iterable[Batch], mesh: Mesh, size: int = 2,
                 batch_axis: int = 0, global_batch: int | None = None) -> Iterator[Batch]:
  """Host batches -> global `jax.Array`s sharded over `data`, `size` batches in flight.

  The one place a batch leaves the host: each process passes its rows of every
  global batch (`local_rows`) and gets the global array (`sharding.shard_batch`).
  `jax.device_put` returns before the copy ends, so queueing the next batch while
  the current one is consumed overlaps host-to-device transfer with compute.

  Args:
    batches: host batches (this process's rows of each, in a multi-process run).
    mesh: the device mesh.
    size: batches in flight.
    batch_axis, global_batch: see `sharding.shard_batch`.
  """
  queue = collections.deque()
  for batch in batches:
    queue.append(sharding.shard_batch(batch, mesh, batch_axis, global_batch))
    if len(queue) >= size:
      yield queue.popleft()
  while queue:
    yield queue.popleft()


class DatasetLoader:
  """Training batches of any `LongTailDataset`, in-memory or streaming, on the mesh.

  In-memory datasets gather their batches on the host in `epoch_permutation` order;
  streaming ones come from their tf.data pipeline. Either way the order is a function
  of (seed, epoch), so a run resumed at `start_step` sees what the uninterrupted run
  would have.

  Example:
    loader = DatasetLoader(ds, 128, mesh, seed=0)
    for batch in batches_from(loader, step, total_steps):  # {"image", "label"} on mesh
      state, metrics = train_step(state, batch, rng)

  Args:
    dataset: a `LongTailDataset`.
    global_batch: examples per step over all devices; must divide over the mesh.
    mesh: the device mesh with a `data` axis.
    seed: data-order seed.
  """

  def __init__(self, dataset, global_batch: int, mesh: Mesh, seed: int):
    sharding.check_global_batch(global_batch, mesh)
    if dataset.num_train < global_batch:
      raise ValueError(f"global batch {global_batch} is larger than the "
                       f"{dataset.num_train} training images")
    self.dataset = dataset
    self.global_batch = global_batch
    self.mesh = mesh
    self.seed = seed

  @property
  def steps_per_epoch(self) -> int:
    return self.dataset.num_train // self.global_batch  # incomplete batches dropped

  def host_epoch(self, epoch: int, start_step: int = 0) -> Iterator[Batch]:
    """This process's rows of every batch of `epoch`, as numpy, from `start_step` on."""
    return self.dataset.train_stream(self.global_batch, self.seed, epoch, start_step,
                                     rows=local_rows(self.global_batch, self.mesh))

  def epoch(self, epoch: int, start_step: int = 0) -> Iterator[Batch]:
    """Batches of `epoch` on the mesh, from `start_step` on."""
    return start_global(self.host_epoch(epoch, start_step), self.mesh,
                            global_batch=self.global_batch)


def local_rows(global_batch: int, mesh: Mesh) -> slice | None:
  """This process's rows of a global batch (`sharding.process_rows`), or None for
  the whole batch (a one-process run)."""
  rows = sharding.process_rows(global_batch, mesh)
  return None if rows == slice(0, global_batch) else rows


def eval_batches(dataset, split: str, global_batch: int, mesh: Mesh) -> Iterator[Batch]:
  """{"image", "label", "mask"} batches of `split` ("test" or "val") on the mesh, covering
  every example once; the last is padded and "mask" marks the real examples."""
  rows = local_rows(global_batch, mesh)
  return start_global(dataset.test_stream(global_batch, split, rows=rows), mesh,
                          global_batch=global_batch)


def batches_from(loader, step: int, total: int) -> Iterator[Batch]:
  """The batches of steps `step` ... `total - 1` of a run, across epochs: the epoch
  (which fixes the order) and the position in it are derived from the step."""
  spe = loader.steps_per_epoch
  while step < total:
    epoch, offset = divmod(step, spe)
    stop = min(spe, total - epoch * spe)  # the last epoch may end early
    yield from itertools.islice(loader.epoch(epoch, start_step=offset), stop - offset)
    step = epoch * spe + stop


def train_eval_batches(dataset, global_batch: int, mesh: Mesh,
                       seed: int) -> Iterator[Batch]:
  """The training set once, as masked evaluation batches on the mesh (unaugmented where
  it is in memory; a streamed training set only comes augmented, so one epoch of it)."""
  rows = local_rows(global_batch, mesh)
  if dataset.streaming:
    batches = ({**b, "mask": np.ones(len(b["label"]), bool)}
               for b in dataset.train_stream(global_batch, seed, 0, rows=rows))
  else:
    batches = host_eval_batches(dataset.train_images, dataset.train_labels, global_batch,
                                rows)
  return start_global(batches, mesh, global_batch=global_batch)
