"""The dataset object every source returns, and the numpy-only ways to make and move it.

Nothing here imports TensorFlow: a dataset saved with `save_arrays` (or cached by
`load_dataset`) loads on a machine that has only numpy and JAX.
"""

from __future__ import annotations

import dataclasses
import warnings
from typing import Any, Callable, Iterator, Sequence

import numpy as np

from krd_jax.data import profiles

Batch = dict[str, np.ndarray]

# Bumped whenever the saved layout changes, so old files are refused, not misread.
ARRAYS_FORMAT = 1

ARRAY_FIELDS = ("train_images", "train_labels", "test_images", "test_labels",
                 "val_images", "val_labels")

# Per-channel statistics of ImageNet in [0, 1] units, used where the training images
# are not in memory to measure (the streaming sources).
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclasses.dataclass(eq=False)
class LongTailDataset:
  """A long-tailed training set, its balanced test (and validation) set, and metadata.

  In-memory datasets carry uint8 images [N, H, W, C] and int32 labels [N]; streaming
  ones (`streaming=True`) carry no arrays and produce batches via `train_stream` /
  `test_stream` instead. `mean` / `std` are per-channel in [0, 1] units, as
  `krd_jax.data.augment.normalize` expects.

  Attributes:
    name: dataset name, e.g. "cifar10_lt".
    num_classes: C.
    class_names: C names; index = label.
    train_counts: np.int64 [C] training images per class (the long-tail profile).
    image_shape: (H, W, channels) of every image a batch holds.
    mean: float32 [channels] training-set mean in [0, 1] units.
    std: float32 [channels] training-set standard deviation in [0, 1] units.
    train_images, train_labels: the long-tailed training set (None if streaming).
    test_images, test_labels: the balanced test set, never subsampled.
    val_images, val_labels: a balanced validation split drawn from the training
      images the long-tail subsampling left out; empty when not requested or not
      possible.
    streaming: True when batches come from tf.data rather than arrays.
    info: provenance (source, profile, imbalance, seed, n_max, val_per_class, ...).
  """

  name: str
  num_classes: int
  class_names: list[str]
  train_counts: np.ndarray
  image_shape: tuple[int, int, int]
  mean: np.ndarray
  std: np.ndarray
  train_images: np.ndarray | None = None
  train_labels: np.ndarray | None = None
  test_images: np.ndarray | None = None
  test_labels: np.ndarray | None = None
  val_images: np.ndarray | None = None
  val_labels: np.ndarray | None = None
  streaming: bool = False
  info: dict[str, Any] = dataclasses.field(default_factory=dict)
  # Streaming sources plug their tf.data pipelines in here.
  train_stream_fn: Callable[..., Iterator[Batch]] | None = dataclasses.field(
      default=None, repr=False)
  test_stream_fn: Callable[..., Iterator[Batch]] | None = dataclasses.field(
      default=None, repr=False)

  def __post_init__(self):
    self.num_classes = int(self.num_classes)
    self.class_names = [str(n) for n in self.class_names]
    self.train_counts = np.asarray(self.train_counts, dtype=np.int64)
    self.image_shape = tuple(int(d) for d in self.image_shape)
    self.mean = np.asarray(self.mean, dtype=np.float32)
    self.std = np.asarray(self.std, dtype=np.float32)
    if len(self.class_names) != self.num_classes:
      raise ValueError(
          f"{len(self.class_names)} class names for {self.num_classes} classes")
    if self.train_counts.shape != (self.num_classes,):
      raise ValueError(
          f"train_counts has shape {self.train_counts.shape}, expected ({self.num_classes},)")
    empty = np.flatnonzero(self.train_counts <= 0)
    if empty.size:
      raise ValueError(
          f"class(es) {empty[:10].tolist()} have no training images "
          f"({[self.class_names[c] for c in empty[:3]]}...); every class needs at least one")
    if len(self.image_shape) != 3:
      raise ValueError(f"image_shape must be (H, W, C), got {self.image_shape}")
    if self.streaming:
      if self.train_stream_fn is None or self.test_stream_fn is None:
        raise ValueError("a streaming dataset needs train_stream_fn and test_stream_fn")
      return
    if self.val_images is None:
      self.val_images = np.zeros((0, *self.image_shape), np.uint8)
      self.val_labels = np.zeros((0,), np.int32)
    for split in ("train", "test", "val"):
      self._check_split(split)
    counted = np.bincount(self.train_labels, minlength=self.num_classes)
    if not np.array_equal(counted, self.train_counts):
      raise ValueError("train_counts do not match the training labels")

  def _check_split(self, split: str) -> None:
    images = getattr(self, f"{split}_images")
    labels = getattr(self, f"{split}_labels")
    if images is None or labels is None:
      raise ValueError(f"in-memory dataset {self.name!r} lacks {split} images or labels")
    images, labels = np.asarray(images), np.asarray(labels)
    if images.dtype != np.uint8:
      raise ValueError(f"{split}_images must be uint8, got {images.dtype}")
    if images.shape[1:] != self.image_shape:
      raise ValueError(
          f"{split}_images have shape {images.shape}, expected [N, *{self.image_shape}]")
    if len(images) != len(labels):
      raise ValueError(f"{len(images)} {split} images but {len(labels)} labels")
    labels = profiles.check_labels(labels, self.num_classes, f"{split} labels")
    setattr(self, f"{split}_images", images)
    setattr(self, f"{split}_labels", labels.astype(np.int32))

  @property
  def num_train(self) -> int:
    """Number of training examples."""
    return int(self.train_counts.sum())

  def groups(self, split: str = "absolute") -> np.ndarray:
    """Each class's group: see `krd_jax.data.profiles.class_groups`."""
    return profiles.class_groups(self.train_counts, split)

  def train_stream(self, global_batch: int, seed: int, epoch: int,
                   start_step: int = 0, rows: slice | None = None) -> Iterator[Batch]:
    """Host batches {"image": uint8 [B,H,W,C], "label": int32 [B]} of one epoch.

    Streaming datasets decode and augment in tf.data; in-memory ones yield raw
    images in `epoch_permutation` order (augment on device). Incomplete last
    batches are dropped. The order is a function of (seed, epoch), so
    `start_step` resumes a run mid-epoch on the same examples. With `rows` (a
    process's share, `sharding.process_rows`) only those rows of every batch are
    read and yielded.
    """
    if self.streaming:
      if rows is None:  # sources written before `rows` existed keep working
        return self.train_stream_fn(global_batch, seed, epoch, start_step)
      return self.train_stream_fn(global_batch, seed, epoch, start_step, rows=rows)
    from krd_jax.data import loader  # pylint: disable=g-import-not-at-top
    return loader.host_epoch_batches(
        self.train_images, self.train_labels, global_batch, seed, epoch, start_step,
        rows=rows)

  def test_stream(self, batch: int, split: str = "test",
                  rows: slice | None = None) -> Iterator[Batch]:
    """Host batches {"image", "label", "mask"} of the balanced test (or "val") set.

    Every example appears once; the last batch is padded to `batch` and "mask"
    marks the real examples. With `rows`, only those rows of every batch.
    """
    if self.streaming:
      if rows is None:
        return self.test_stream_fn(batch, split)
      return self.test_stream_fn(batch, split, rows=rows)
    from krd_jax.data import loader  # pylint: disable=g-import-not-at-top
    if split not in ("test", "val"):
      raise ValueError(f"unknown evaluation split {split!r}; expected 'test' or 'val'")
    return loader.host_eval_batches(
        getattr(self, f"{split}_images"), getattr(self, f"{split}_labels"), batch, rows)


def channel_stats(images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """Per-channel mean and standard deviation of uint8 images, in [0, 1] units.

  Works from each channel's 256-bin histogram: exact, and no float copy of the
  images is made.
  """
  channels = images.shape[-1]
  values = np.arange(256, dtype=np.float64) / 255.0
  mean = np.zeros(channels)
  std = np.ones(channels)
  flat = images.reshape(-1, channels)
  if len(flat):
    for c in range(channels):
      hist = np.bincount(flat[:, c], minlength=256) / len(flat)
      mean[c] = hist @ values
      std[c] = np.sqrt(max(hist @ values**2 - mean[c]**2, 0.0))
  # A constant channel would make normalisation divide by zero.
  std = np.where(std > 0, std, 1.0)
  return mean.astype(np.float32), std.astype(np.float32)


def subsample(
    name: str,
    pool_images: np.ndarray,
    pool_labels: np.ndarray,
    test_images: np.ndarray,
    test_labels: np.ndarray,
    class_names: Sequence[str],
    *,
    imbalance: float | None,
    profile: str = "exp",
    seed: int = 0,
    val_per_class: int = 0,
    n_max: int | None = None,
    info: dict[str, Any] | None = None,
) -> LongTailDataset:
  """Makes a long-tailed dataset from a balanced pool (or keeps the pool as it is).

  Args:
    name: dataset name.
    pool_images, pool_labels: the full training pool, uint8 [N,H,W,C] / int [N].
    test_images, test_labels: the balanced test set, kept whole.
    class_names: C names.
    imbalance: IF; None keeps the pool as given (already long-tailed).
    profile: "exp" or "step".
    seed: picks which images each class keeps.
    val_per_class: balanced validation images per class from the left-out pool.
    n_max: images of the head class; default the smallest class of the pool.
    info: extra provenance recorded in `LongTailDataset.info`.

  Returns:
    The `LongTailDataset`.

  Raises:
    ValueError: labels outside [0, C), IF < 1, a profile leaving a class empty, or
      n_max larger than some class of the pool.
  """
  num_classes = len(class_names)
  pool_labels = profiles.check_labels(pool_labels, num_classes, "training labels")
  test_labels = profiles.check_labels(test_labels, num_classes, "test labels")
  pool_counts = np.bincount(pool_labels, minlength=num_classes)
  info = dict(info or {})
  if imbalance is None:
    counts = pool_counts
    train_idx = np.arange(len(pool_labels))
    val_idx = np.zeros((0,), np.int64)
    if val_per_class:
      warnings.warn("val_per_class is ignored when no long-tail profile is applied")
  else:
    counts = profile_counts(pool_counts, imbalance, profile, n_max)
    train_idx = profiles.long_tail_indices(pool_labels, counts, seed)
    val_idx = profiles.validation_indices(pool_labels, counts, val_per_class, seed)
    if val_idx is None:
      warnings.warn(
          f"{name}: cannot draw {val_per_class} validation images per class from the "
          f"images the long-tail profile left out (class 0 keeps {counts[0]} of "
          f"{pool_counts[0]}); the validation split is empty. Pass a smaller n_max.")
      val_idx = np.zeros((0,), np.int64)
    info.update(profile=profile, imbalance=float(imbalance), n_max=int(counts.max()))
  info.update(seed=int(seed), val_per_class=int(val_per_class) if len(val_idx) else 0)
  train_images = pool_images[train_idx]
  mean, std = channel_stats(train_images)
  return LongTailDataset(
      name=name, num_classes=num_classes, class_names=list(class_names),
      train_counts=counts, image_shape=pool_images.shape[1:], mean=mean, std=std,
      train_images=train_images, train_labels=pool_labels[train_idx],
      test_images=np.asarray(test_images), test_labels=test_labels,
      val_images=pool_images[val_idx], val_labels=pool_labels[val_idx], info=info)


def check_no_empty_class(counts: np.ndarray, n_max: int, imbalance: float,
                         profile: str) -> None:
  """Raises ValueError naming the classes a profile leaves with zero images."""
  empty = np.flatnonzero(np.asarray(counts) == 0)
  if empty.size:
    raise ValueError(
        f"the {profile!r} profile with n_max={n_max}, imbalance={imbalance:g} leaves "
        f"class(es) {empty.tolist()} with zero images; lower the imbalance factor or "
        f"raise n_max")


def profile_counts(pool_counts: np.ndarray, imbalance: float, profile: str,
                   n_max: int | None) -> np.ndarray:
  """Counts of a profile over a pool, with the checks every loader needs.

  Raises:
    ValueError: a class the profile leaves empty, or one the pool cannot fill.
  """
  pool_counts = np.asarray(pool_counts, dtype=np.int64)
  if n_max is None:
    n_max = int(pool_counts.min())
  counts = profiles.long_tail_counts(n_max, len(pool_counts), imbalance, profile)
  check_no_empty_class(counts, n_max, imbalance, profile)
  profiles.check_pool_fills(pool_counts, counts)
  return counts


def from_arrays(
    name: str,
    train_images: np.ndarray,
    train_labels: np.ndarray,
    test_images: np.ndarray,
    test_labels: np.ndarray,
    class_names: Sequence[str] | None = None,
    *,
    num_classes: int | None = None,
    imbalance: float | None = None,
    profile: str = "exp",
    seed: int = 0,
    val_per_class: int = 0,
    n_max: int | None = None,
) -> LongTailDataset:
  """A `LongTailDataset` from numpy arrays, long-tailed on request.

  Args:
    name: dataset name.
    train_images: uint8 [N, H, W, C] (a [N, H, W] grey set gets a channel axis).
    train_labels: int [N] in [0, C).
    test_images, test_labels: the balanced test set.
    class_names: C names; default "0" .. "C-1".
    num_classes: C when there are no class_names; default max label + 1.
    imbalance: None uses the training arrays as they are (already long-tailed);
      a number >= 1 subsamples them with `profile` as `load_dataset` does.
    profile, seed, val_per_class, n_max: as in `load_dataset`.

  Returns:
    The `LongTailDataset`.
  """
  arrays = []
  for what, images in (("train_images", train_images), ("test_images", test_images)):
    images = np.asarray(images)
    if images.dtype != np.uint8:
      raise ValueError(f"{what} must be uint8 (0..255), got {images.dtype}")
    if images.ndim == 3:
      images = images[..., None]
    if images.ndim != 4:
      raise ValueError(f"{what} must be [N, H, W, C], got shape {images.shape}")
    arrays.append(images)
  if class_names is None:
    if num_classes is None:
      num_classes = int(max(np.max(train_labels, initial=-1), np.max(test_labels, initial=-1))) + 1
    class_names = [str(c) for c in range(num_classes)]
  elif num_classes is not None and num_classes != len(class_names):
    raise ValueError(f"{len(class_names)} class names but num_classes={num_classes}")
  if imbalance is not None:
    imbalance = profiles.check_imbalance(imbalance)
  return subsample(
      name, arrays[0], train_labels, arrays[1], test_labels, class_names,
      imbalance=imbalance, profile=profile, seed=seed, val_per_class=val_per_class,
      n_max=n_max, info={"source": "arrays"})


def describe(ds: LongTailDataset) -> str:
  """One line naming the dataset, its size and its profile, for logs."""
  info = ds.info
  profile = (f"{info['profile']} IF={info['imbalance']:g} n_max={info['n_max']}"
             if "profile" in info else "as given")
  n_test = "?" if ds.streaming else len(ds.test_labels)
  return (f"{ds.name}: {ds.num_classes} classes, {ds.num_train} train ({profile}), "
          f"{n_test} test, image {ds.image_shape}")

