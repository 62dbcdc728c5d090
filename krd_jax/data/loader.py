"""Batches from in-memory arrays, placed on the `data` mesh axis.

The host only gathers uint8 images by index (cheap); augmentation runs on device
inside the jitted step (`krd_jax.data.augment`). Orders are pure functions of
(seed, epoch), so a run resumed from a checkpoint at (epoch, step) sees exactly the
batches it would have seen.
"""

from __future__ import annotations

import collections
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
  """Numpy batches {"image", "label"} of one epoch in `epoch_permutation` order.

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
    yield {"image": images[idx], "label": np.asarray(labels[idx], np.int32)}


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


def prefetch_to_mesh(batches: Iterable[Batch], mesh: Mesh, size: int = 2,
                     batch_axis: int = 0, global_batch: int | None = None) -> Iterator[Batch]:
  """Shards host batches over the mesh, keeping `size` batches in flight.

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


class InMemoryLoader:
  """Epochs of sharded training batches from arrays held in host memory.

  Example:
    loader = InMemoryLoader(ds.train_images, ds.train_labels, 128, mesh, seed=0)
    for epoch in range(epochs):
      for batch in loader.epoch(epoch):   # {"image": uint8, "label": int32}
        state, metrics = train_step(state, batch, rng)
  """

  def __init__(self, images: np.ndarray, labels: np.ndarray, global_batch: int,
               mesh: Mesh, seed: int, drop_last: bool = True):
    """Checks the batch against the mesh and the data.

    Args:
      images: uint8 [N, H, W, C].
      labels: int [N].
      global_batch: examples per step over all devices; a multiple of the number
        of devices on the `data` axis.
      mesh: the mesh from `krd_jax.sharding.make_mesh`.
      seed: the run seed; with the epoch it fixes every order.
      drop_last: see `host_epoch_batches`.

    Raises:
      ValueError: a global batch that does not split over the mesh, mismatched
        arrays, or fewer examples than one batch with drop_last.
    """
    sharding.check_global_batch(global_batch, mesh)
    _check_arrays(images, labels)
    if drop_last and len(labels) < global_batch:
      raise ValueError(
          f"{len(labels)} examples make no full batch of {global_batch}; lower the "
          f"batch size or pass drop_last=False")
    self.images = images
    self.labels = np.asarray(labels, np.int32)
    self.global_batch = int(global_batch)
    self.mesh = mesh
    self.seed = int(seed)
    self.drop_last = drop_last

  @property
  def num_examples(self) -> int:
    return len(self.labels)

  @property
  def steps_per_epoch(self) -> int:
    n, b = self.num_examples, self.global_batch
    return n // b if self.drop_last else math.ceil(n / b)

  def epoch(self, epoch: int, start_step: int = 0) -> Iterator[Batch]:
    """Sharded batches of `epoch`, from batch `start_step` on."""
    if not 0 <= start_step <= self.steps_per_epoch:
      raise ValueError(f"start_step {start_step} outside [0, {self.steps_per_epoch}]")
    rows = sharding.process_rows(self.global_batch, self.mesh)
    host = host_epoch_batches(self.images, self.labels, self.global_batch, self.seed,
                              epoch, start_step, self.drop_last, rows)
    return prefetch_to_mesh(host, self.mesh, global_batch=self.global_batch)


def eval_batches(images: np.ndarray, labels: np.ndarray, global_batch: int,
                 mesh: Mesh) -> Iterator[Batch]:
  """Sharded {"image", "label", "mask"} batches covering every example once.

  Args:
    images, labels: the evaluation set.
    global_batch: a multiple of the number of devices on the `data` axis.
    mesh: the device mesh.

  Returns:
    An iterator of batches; the last is padded and "mask" marks real examples,
    so metrics must be averaged with the mask.
  """
  rows = sharding.process_rows(global_batch, mesh)
  return prefetch_to_mesh(host_eval_batches(images, labels, global_batch, rows), mesh,
                          global_batch=global_batch)



class DatasetLoader:
  """Training batches of any `LongTailDataset`, in-memory or streaming, on the mesh.

  In-memory datasets give exactly `InMemoryLoader`'s batches; streaming ones come from
  their tf.data pipeline. Either way the order is a function of (seed, epoch), so a run
  resumed at `start_step` sees what the uninterrupted run would have.

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
    return prefetch_to_mesh(self.host_epoch(epoch, start_step), self.mesh,
                            global_batch=self.global_batch)


def local_rows(global_batch: int, mesh: Mesh) -> slice | None:
  """This process's rows of a global batch (`sharding.process_rows`), or None for
  the whole batch (a one-process run)."""
  rows = sharding.process_rows(global_batch, mesh)
  return None if rows == slice(0, global_batch) else rows


def dataset_eval_batches(dataset, split: str, global_batch: int,
                         mesh: Mesh) -> Iterator[Batch]:
  """`dataset.test_stream` batches of `split` on the mesh, each process reading its rows."""
  rows = local_rows(global_batch, mesh)
  return prefetch_to_mesh(dataset.test_stream(global_batch, split, rows=rows), mesh,
                          global_batch=global_batch)


def batches_from(loader, step: int, total: int) -> Iterator[Batch]:
  """The batches of steps `step` ... `total - 1` of a run, across epochs: the epoch
  (which fixes the order) and the position in it are derived from the step."""
  spe = loader.steps_per_epoch
  while step < total:
    epoch, offset = divmod(step, spe)
    yield from loader.epoch(epoch, start_step=offset)
    step = (epoch + 1) * spe


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
  return prefetch_to_mesh(batches, mesh, global_batch=global_batch)
