"""`load_dataset`: every long-tailed source behind one call.

In-memory sources (digits, CIFAR, image folders) are decoded once through
tensorflow-datasets into a cached balanced pool (`<cache>/sources`), made long-tailed
with `krd_jax.data.profiles`, and cached again per (source, profile, IF, seed,
val_per_class, n_max) in `<cache>/datasets`. A cache hit reads one .npz and never
imports TensorFlow. Streaming sources (ImageNet-LT, Places-LT, iNaturalist 2018)
return a dataset whose batches come from tf.data pipelines (`streaming.py`).

Every argument is checked before anything is decoded or written: an unknown name,
IF < 1, a profile leaving a class empty, a split list naming missing files or files
outside its root, or labels outside [0, C) raise ValueError naming the problem.
"""

from __future__ import annotations

import os
import pathlib
from typing import Any, Callable

import numpy as np

from krd_jax.data import cache
from krd_jax.data import dataset as dataset_lib
from krd_jax.data import digits
from krd_jax.data import image_folder
from krd_jax.data import npz
from krd_jax.data import profiles
from krd_jax.data import streamed_sources
from krd_jax.data.decode import SourceArrays, tfds_split_to_numpy

LongTailDataset = dataset_lib.LongTailDataset

CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog",
                   "horse", "ship", "truck")

# Per-dataset facts. `n_max` is the head-class count of the long-tail profile;
# `imbalance` the benchmark's usual IF (experiments/data_summary.py's default).
DATASET_DEFAULTS: dict[str, dict[str, Any]] = {
    "digits_lt": dict(num_classes=10, n_max=100, imbalance=50.0),
    "cifar10_lt": dict(num_classes=10, n_max=5000, imbalance=100.0, tfds_name="cifar10"),
    "cifar100_lt": dict(num_classes=100, n_max=500, imbalance=100.0, tfds_name="cifar100"),
    "image_folder": dict(imbalance=100.0),
    "imagenet_lt": dict(num_classes=1000, list_prefix="ImageNet_LT", image_size=224,
                        transform="inception"),
    "places_lt": dict(num_classes=365, list_prefix="Places_LT", image_size=224,
                      transform="inception"),
    "inat2018": dict(num_classes=8142, tfds_name="i_naturalist2018", image_size=224,
                     transform="inception"),
}

DATASET_NAMES = tuple(DATASET_DEFAULTS)


# ----------------------------------------------------------------------------------
# In-memory sources. Each knows its cache identity, class count and head size without
# TensorFlow; only `load` decodes.


class _DigitsSource:
  """scikit-learn digits, written as a real tfds dataset under `<cache>/tfds`."""

  name = "digits_lt"

  def __init__(self, cache_dir: pathlib.Path):
    self.tfds_dir = cache_dir / "tfds"
    self.num_classes = DATASET_DEFAULTS[self.name]["num_classes"]
    self.n_max = DATASET_DEFAULTS[self.name]["n_max"]
    self.identity = {"source": "sklearn_digits", "builder": "krd_digits:1.0.0",
                     "test_per_class": digits.TEST_PER_CLASS,
                     "holdout_seed": digits.HOLDOUT_SEED}

  def pool_counts(self) -> np.ndarray:
    return digits.pool_counts()

  def load(self, progress: bool = True) -> SourceArrays:
    from krd_jax.data import digits_tfds  # pylint: disable=g-import-not-at-top
    builder = digits_tfds.prepared_builder(os.fspath(self.tfds_dir))
    pool = tfds_split_to_numpy(builder, "train", "id", "digits train", progress)
    test = tfds_split_to_numpy(builder, "test", "id", "digits test", progress)
    return SourceArrays(*pool, *test, builder.info.features["label"].names)


class _TfdsCifarSource:
  """tfds `cifar10` / `cifar100` (downloaded and prepared by tfds where there is internet)."""

  def __init__(self, name: str, data_dir: str | None):
    defaults = DATASET_DEFAULTS[name]
    self.name = name
    self.tfds_name = defaults["tfds_name"]
    self.data_dir = None if data_dir is None else os.path.abspath(os.path.expanduser(data_dir))
    self.num_classes = defaults["num_classes"]
    self.n_max = defaults["n_max"]
    self.identity = {"source": f"tfds:{self.tfds_name}", "data_dir": self.data_dir}

  def pool_counts(self) -> np.ndarray:
    # CIFAR's training split is balanced: n_max images of every class.
    return np.full(self.num_classes, self.n_max, np.int64)

  def load(self, progress: bool = True) -> SourceArrays:
    import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
    builder = tfds.builder(self.tfds_name, data_dir=self.data_dir)
    builder.download_and_prepare()
    pool = tfds_split_to_numpy(builder, "train", "id", f"{self.tfds_name} train", progress)
    test = tfds_split_to_numpy(builder, "test", "id", f"{self.tfds_name} test", progress)
    names = list(builder.info.features["label"].names)
    if self.tfds_name == "cifar10" and all(n.isdigit() for n in names):
      names = list(CIFAR10_CLASSES)  # An unprepared (or mocked) builder only has "0".."9".
    return SourceArrays(*pool, *test, names)


def _source_arrays(source: Any, cache_dir: pathlib.Path, progress: bool) -> SourceArrays:
  """The decoded balanced source, from `<cache>/sources` or decoded (then cached)."""
  key = cache.cache_key(source.identity)
  path = cache_dir / "sources" / f"{source.name}-{key[:16]}.npz"
  arrays = cache.read(path, key)
  if arrays is not None:
    return SourceArrays.from_arrays(arrays)
  src = source.load(progress)
  # Checked before the write: nothing with bad labels is ever cached.
  n = len(src.class_names)
  profiles.check_labels(src.pool_labels, n, f"{source.name} training labels")
  profiles.check_labels(src.test_labels, n, f"{source.name} test labels")
  cache.write(path, key, src.to_arrays(), source.identity)
  return src


def _load_in_memory(source: Any, *, imbalance: float, profile: str, seed: int,
                    val_per_class: int, n_max: int | None,
                    cache_dir: pathlib.Path, progress: bool) -> LongTailDataset:
  n_max = source.n_max if n_max is None else int(n_max)
  # A profile that empties a class is refused before any cache lookup.
  dataset_lib.check_no_empty_class(
      profiles.long_tail_counts(n_max, source.num_classes, imbalance, profile),
      n_max, imbalance, profile)
  fields = dict(source.identity, profile=profile, imbalance=imbalance, seed=seed,
                val_per_class=val_per_class, n_max=n_max)
  key = cache.cache_key(fields)
  path = (cache_dir / "datasets" /
          f"{source.name}-{profile}-if{imbalance:g}-seed{seed}-val{val_per_class}-{key[:12]}.npz")
  arrays = cache.read(path, key)
  if arrays is not None:
    ds = npz.dataset_from_arrays(arrays)
    ds.info["cache_file"] = os.fspath(path)
    return ds
  dataset_lib.profile_counts(source.pool_counts(), imbalance, profile, n_max)
  src = _source_arrays(source, cache_dir, progress)
  ds = dataset_lib.subsample(
      source.name, src.pool_images, src.pool_labels, src.test_images, src.test_labels,
      src.class_names, imbalance=imbalance, profile=profile, seed=seed,
      val_per_class=val_per_class, n_max=n_max, info={"source": source.identity["source"]})
  cache.write(path, key, npz.dataset_to_arrays(ds), fields)
  ds.info["cache_file"] = os.fspath(path)
  return ds


# ----------------------------------------------------------------------------------


def load_dataset(
    name: str,
    *,
    imbalance: float = 100.0,
    profile: str = "exp",
    seed: int = 0,
    val_per_class: int = 0,
    data_dir: str | os.PathLike | None = None,
    split_list_dir: str | os.PathLike | None = None,
    cache_dir: str | os.PathLike | None = None,
    n_max: int | None = None,
    streaming: bool | None = None,
    image_size: int | None = None,
    progress: bool = True,
) -> LongTailDataset:
  """Loads a long-tailed dataset by name.

  Args:
    name: one of `DATASET_NAMES`:
      "digits_lt": scikit-learn's 8x8 digits (offline), 30 test images per class
        held out, the other 1497 made long-tailed (head n_max = 100).
      "cifar10_lt" / "cifar100_lt": tfds cifar10 / cifar100 (n_max 5000 / 500).
      "image_folder": `tfds.ImageFolder` at data_dir (root/split/label/*.jpg|png;
        evaluation split "test", else "val" / "validation"); n_max = the smallest
        training class. All images must share one size unless streaming=True.
      "imagenet_lt" / "places_lt": split lists <prefix>_{train,val,test}.txt
        ("relative/path label") in split_list_dir over the images in data_dir;
        streaming; val optional.
      "inat2018": tfds i_naturalist2018, long-tailed as it is; streaming; its
        validation split is the test set.
    imbalance: IF = n_max / n_min (>= 1) of the profile; ignored by the naturally
      long-tailed streaming sources.
    profile: "exp" or "step" (see `profiles.long_tail_counts`).
    seed: picks the kept images of each class.
    val_per_class: balanced validation images per class, from training images the
      profile left out (empty, with a warning, where some class has too few).
    data_dir: the image root (image_folder, split lists) or the tfds data_dir
      (cifar, inat2018; default tfds' own).
    split_list_dir: folder of the split lists; default data_dir.
    cache_dir: decoded-array cache; default $KRD_JAX_CACHE or ~/.cache/krd_jax.
    n_max: head-class images, overriding the dataset's default (lower it to make
      room for val_per_class on CIFAR).
    streaming: image_folder only: stream files through tf.data instead of decoding
      them into memory (no long-tail subsampling then).
    image_size: output side of streaming sources (default 224; image_folder
      streaming needs it).
    progress: progress bars while decoding a source (or counting iNaturalist's
      labels) for the first time; False for none.

  Returns:
    A `LongTailDataset`.

  Raises:
    ValueError: unknown name, IF < 1, unknown profile, a profile leaving a class
      empty, a missing folder or split list, a split list naming missing files or
      files outside the root, labels outside [0, C). Raised before anything is
      decoded or cached.
  """
  if name not in DATASET_DEFAULTS:
    raise ValueError(f"unknown dataset {name!r}; expected one of {DATASET_NAMES}")
  imbalance = profiles.check_imbalance(imbalance)
  if profile not in profiles.PROFILES:
    raise ValueError(f"unknown long-tail profile {profile!r}; expected one of "
                     f"{profiles.PROFILES}")
  if int(seed) != seed or seed < 0:
    raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
  if int(val_per_class) != val_per_class or val_per_class < 0:
    raise ValueError(f"val_per_class must be a non-negative integer, got {val_per_class!r}")
  if n_max is not None and int(n_max) < 1:
    raise ValueError(f"n_max must be >= 1, got {n_max}")
  if streaming is not None and name != "image_folder":
    raise ValueError(f"streaming= applies to image_folder only; {name} is "
                     f"{'streaming' if 'image_size' in DATASET_DEFAULTS[name] else 'in-memory'}")
  cache_root = cache.default_cache_dir() if cache_dir is None else pathlib.Path(cache_dir)
  cache_root = cache_root.expanduser()
  data_dir = None if data_dir is None else os.fspath(data_dir)
  split_list_dir = None if split_list_dir is None else os.fspath(split_list_dir)
  seed, val_per_class = int(seed), int(val_per_class)

  streaming_loaders: dict[str, Callable[[], LongTailDataset]] = {
      "imagenet_lt": lambda: streamed_sources.load_split_lists(
          "imagenet_lt", DATASET_DEFAULTS["imagenet_lt"], data_dir=data_dir,
          split_list_dir=split_list_dir, image_size=image_size),
      "places_lt": lambda: streamed_sources.load_split_lists(
          "places_lt", DATASET_DEFAULTS["places_lt"], data_dir=data_dir,
          split_list_dir=split_list_dir, image_size=image_size),
      "inat2018": lambda: streamed_sources.load_inat(
          DATASET_DEFAULTS["inat2018"], data_dir=data_dir, image_size=image_size,
          cache_dir=cache_root, progress=progress),
  }
  if name in streaming_loaders:
    return streaming_loaders[name]()
  if name == "image_folder" and streaming:
    return image_folder.load_streaming(data_dir=data_dir, image_size=image_size)

  if name == "digits_lt":
    source = _DigitsSource(cache_root)
  elif name == "image_folder":
    source = image_folder.ImageFolderSource(data_dir)
  else:
    source = _TfdsCifarSource(name, data_dir)
  return _load_in_memory(source, imbalance=imbalance, profile=profile, seed=seed,
                         val_per_class=val_per_class, n_max=n_max, cache_dir=cache_root,
                         progress=progress)
