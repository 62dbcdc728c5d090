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

import dataclasses
import hashlib
import os
import pathlib
from typing import Any, Callable

import numpy as np

from krd_jax.data import cache
from krd_jax.data import dataset as dataset_lib
from krd_jax.data import digits
from krd_jax.data import profiles
from krd_jax.data import streaming as streaming_lib

LongTailDataset = dataset_lib.LongTailDataset

CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog",
                   "horse", "ship", "truck")

# Per-dataset facts and suggested settings. `n_max` is the head-class count of the
# long-tail profile; `augment` holds suggested `krd_jax.data.augment.augment` kwargs
# (digits: a mirrored digit is another digit, so no flip, and 1-pixel shifts only).
DATASET_DEFAULTS: dict[str, dict[str, Any]] = {
    "digits_lt": dict(num_classes=10, n_max=100, imbalance=50.0,
                      augment=dict(pad=1, flip=False)),
    "cifar10_lt": dict(num_classes=10, n_max=5000, imbalance=100.0, tfds_name="cifar10",
                       augment=dict(pad=4, flip=True)),
    "cifar100_lt": dict(num_classes=100, n_max=500, imbalance=100.0, tfds_name="cifar100",
                        augment=dict(pad=4, flip=True)),
    "image_folder": dict(imbalance=100.0, augment=dict(pad=4, flip=True)),
    "imagenet_lt": dict(num_classes=1000, list_prefix="ImageNet_LT", image_size=224,
                        transform="inception"),
    "places_lt": dict(num_classes=365, list_prefix="Places_LT", image_size=224,
                      transform="inception"),
    "inat2018": dict(num_classes=8142, tfds_name="i_naturalist2018", image_size=224,
                     transform="inception"),
}

DATASET_NAMES = tuple(DATASET_DEFAULTS)

# What tfds.ImageFolder reads (its _SUPPORTED_IMAGE_FORMAT).
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png")
# Names accepted for an image folder's balanced evaluation split, in order.
TEST_SPLIT_NAMES = ("test", "val", "validation")
# tf.data batch used to pull decoded tfds splits into numpy.
_DECODE_BATCH = 1024


@dataclasses.dataclass
class SourceArrays:
  """A decoded balanced source: the full training pool and the test set."""
  pool_images: np.ndarray
  pool_labels: np.ndarray
  test_images: np.ndarray
  test_labels: np.ndarray
  class_names: list[str]

  def to_arrays(self) -> dict[str, np.ndarray]:
    return {"pool_images": self.pool_images, "pool_labels": self.pool_labels,
            "test_images": self.test_images, "test_labels": self.test_labels,
            "class_names": np.asarray(self.class_names, dtype=str)}

  @classmethod
  def from_arrays(cls, arrays: dict[str, np.ndarray]) -> SourceArrays:
    return cls(arrays["pool_images"], arrays["pool_labels"], arrays["test_images"],
               arrays["test_labels"], [str(n) for n in arrays["class_names"]])


# ----------------------------------------------------------------------------------
# tfds -> numpy


def tfds_split_to_numpy(builder: Any, split: str, order_key: str,
                        desc: str) -> tuple[np.ndarray, np.ndarray]:
  """Decodes a whole tfds split into (uint8 images, int64 labels), sorted by `order_key`.

  Sorting by a per-example id (CIFAR's "id", a file name) makes the arrays, and so
  the seeded subsets drawn from them, independent of tfds' shard and file order.
  """
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  from tqdm import auto as tqdm  # pylint: disable=g-import-not-at-top
  ds = builder.as_dataset(split=split, shuffle_files=False)
  ds = ds.map(lambda ex: (ex["image"], ex["label"], ex[order_key]),
              num_parallel_calls=tf.data.AUTOTUNE)
  ds = ds.batch(_DECODE_BATCH).prefetch(tf.data.AUTOTUNE)
  try:
    total = builder.info.splits[split].num_examples or None
  except (KeyError, ValueError, TypeError):
    total = None
  images, labels, keys = [], [], []
  try:
    with tqdm.tqdm(total=total, desc=desc, unit="img", leave=False) as bar:
      for image, label, key in tfds.as_numpy(ds):
        images.append(image)
        labels.append(label)
        keys.append(key)
        bar.update(len(label))
  except tf.errors.InvalidArgumentError as e:
    raise ValueError(
        f"{desc}: images of different sizes cannot be stacked in memory; resize them "
        f"to one size first (or load with streaming=True). TensorFlow said: "
        f"{e.message.splitlines()[0]}") from None
  if not images:
    raise ValueError(f"{desc}: split {split!r} is empty")
  images = np.concatenate(images).astype(np.uint8, copy=False)
  labels = np.concatenate(labels).astype(np.int64, copy=False)
  keys = np.concatenate(keys)
  if len(keys) > 1 and not np.all(keys[1:] > keys[:-1]):
    order = np.argsort(keys, kind="stable")
    images, labels = images[order], labels[order]
  return images, labels


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

  def load(self) -> SourceArrays:
    from krd_jax.data import digits_tfds  # pylint: disable=g-import-not-at-top
    builder = digits_tfds.prepared_builder(os.fspath(self.tfds_dir))
    pool = tfds_split_to_numpy(builder, "train", "id", "digits train")
    test = tfds_split_to_numpy(builder, "test", "id", "digits test")
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

  def load(self) -> SourceArrays:
    import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
    builder = tfds.builder(self.tfds_name, data_dir=self.data_dir)
    builder.download_and_prepare()
    pool = tfds_split_to_numpy(builder, "train", "id", f"{self.tfds_name} train")
    test = tfds_split_to_numpy(builder, "test", "id", f"{self.tfds_name} test")
    names = list(builder.info.features["label"].names)
    if self.tfds_name == "cifar10" and all(n.isdigit() for n in names):
      names = list(CIFAR10_CLASSES)  # An unprepared (or mocked) builder only has "0".."9".
    return SourceArrays(*pool, *test, names)


def list_image_folder(
    root: str | os.PathLike) -> tuple[dict[str, list[tuple[str, str]]], list[str]]:
  """Lists root/split/label/image files the way `tfds.ImageFolder` does, without TF.

  Args:
    root: the folder.

  Returns:
    ({split: [(relative path, label name), ...] sorted by path}, sorted class names
    over all splits; a class's label is its index in that list, as in ImageFolder).
  """
  root = os.fspath(root)
  if not os.path.isdir(root):
    raise ValueError(f"image folder {root!r} does not exist or is not a directory")
  splits: dict[str, list[tuple[str, str]]] = {}
  names = set()
  for split in sorted(e.name for e in os.scandir(root) if e.is_dir()):
    examples = []
    for label in sorted(e.name for e in os.scandir(os.path.join(root, split)) if e.is_dir()):
      names.add(label)
      for entry in os.scandir(os.path.join(root, split, label)):
        if entry.name.lower().endswith(IMAGE_EXTENSIONS):
          examples.append((f"{split}/{label}/{entry.name}", label))
    splits[split] = sorted(examples)
  return splits, sorted(names)


def _folder_fingerprint(root: str, splits: dict[str, list[tuple[str, str]]]) -> str:
  """Hash of every listed file's path, size and mtime: a changed folder is a new key."""
  digest = hashlib.sha256()
  for split in sorted(splits):
    for rel, _ in splits[split]:
      stat = os.stat(os.path.join(root, rel))
      digest.update(f"{rel}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
  return digest.hexdigest()


class _ImageFolderSource:
  """`tfds.ImageFolder` over root/split/label/*.jpg|png, labels in sorted-name order."""

  name = "image_folder"

  def __init__(self, data_dir: str | None):
    if data_dir is None:
      raise ValueError("image_folder needs data_dir=<root>, holding train/<label>/* "
                       "and test/<label>/*")
    self.root = os.path.realpath(os.path.expanduser(data_dir))
    self.splits, self.class_names = list_image_folder(self.root)
    if not self.splits.get("train"):
      raise ValueError(f"image folder {self.root!r} has no train/<label>/ images "
                       f"(splits found: {sorted(self.splits)})")
    self.test_split = next((s for s in TEST_SPLIT_NAMES if self.splits.get(s)), None)
    if self.test_split is None:
      raise ValueError(f"image folder {self.root!r} has no test split (one of "
                       f"{TEST_SPLIT_NAMES}); found {sorted(self.splits)}")
    self.num_classes = len(self.class_names)
    self._pool_counts = self._counts("train")
    self.n_max = int(self._pool_counts.min())
    if self.n_max == 0:
      empty = [self.class_names[c] for c in np.flatnonzero(self._pool_counts == 0)]
      raise ValueError(f"image folder {self.root!r}: class(es) {empty} have no training images")
    self.identity = {"source": "image_folder", "root": self.root,
                     "files": _folder_fingerprint(self.root, self.splits)}

  def _counts(self, split: str) -> np.ndarray:
    index = {n: i for i, n in enumerate(self.class_names)}
    labels = [index[label] for _, label in self.splits[split]]
    return np.bincount(labels, minlength=self.num_classes).astype(np.int64)

  def pool_counts(self) -> np.ndarray:
    return self._pool_counts

  def load(self) -> SourceArrays:
    import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
    builder = tfds.ImageFolder(self.root)
    if list(builder.info.features["label"].names) != self.class_names:
      raise ValueError("tfds.ImageFolder found other classes than the folder listing; "
                       "did the folder change while loading?")
    pool = tfds_split_to_numpy(builder, "train", "image/filename", "image folder train")
    test = tfds_split_to_numpy(builder, self.test_split, "image/filename",
                               f"image folder {self.test_split}")
    for (images, labels), split in ((pool, "train"), (test, self.test_split)):
      if not np.array_equal(np.bincount(labels, minlength=self.num_classes),
                            self._counts(split)):
        raise ValueError(f"decoded {split} labels do not match the folder listing")
    return SourceArrays(*pool, *test, self.class_names)


def _source_arrays(source: Any, cache_dir: pathlib.Path) -> SourceArrays:
  """The decoded balanced source, from `<cache>/sources` or decoded (then cached)."""
  key = cache.cache_key(source.identity)
  path = cache_dir / "sources" / f"{source.name}-{key[:16]}.npz"
  arrays = cache.read(path, key)
  if arrays is not None:
    return SourceArrays.from_arrays(arrays)
  src = source.load()
  # Checked before the write: nothing with bad labels is ever cached.
  n = len(src.class_names)
  profiles.check_labels(src.pool_labels, n, f"{source.name} training labels")
  profiles.check_labels(src.test_labels, n, f"{source.name} test labels")
  cache.write(path, key, src.to_arrays(), source.identity)
  return src


def _load_in_memory(source: Any, *, imbalance: float, profile: str, seed: int,
                    val_per_class: int, n_max: int | None,
                    cache_dir: pathlib.Path) -> LongTailDataset:
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
    ds = dataset_lib.dataset_from_arrays(arrays)
    ds.info["cache_file"] = os.fspath(path)
    return ds
  dataset_lib.profile_counts(source.pool_counts(), imbalance, profile, n_max)
  src = _source_arrays(source, cache_dir)
  ds = dataset_lib.subsample(
      source.name, src.pool_images, src.pool_labels, src.test_images, src.test_labels,
      src.class_names, imbalance=imbalance, profile=profile, seed=seed,
      val_per_class=val_per_class, n_max=n_max, info={"source": source.identity["source"]})
  cache.write(path, key, dataset_lib.dataset_to_arrays(ds), fields)
  ds.info["cache_file"] = os.fspath(path)
  return ds


# ----------------------------------------------------------------------------------
# Split lists (ImageNet-LT, Places-LT): "relative/path label" lines over a root.


def read_split_list(list_path: str | os.PathLike, root: str | os.PathLike,
                    num_classes: int) -> tuple[list[str], np.ndarray]:
  """Parses and checks a split list of "relative/path label" lines.

  Args:
    list_path: the text file.
    root: the folder the paths are relative to.
    num_classes: C; labels must lie in [0, C).

  Returns:
    (absolute file paths, int64 labels).

  Raises:
    ValueError: a malformed line, a path that is absolute, climbs out of the root
      with "..", or resolves (through a symlink) outside the root, a file that does
      not exist, or a label outside [0, C). The message names the line(s).
  """
  list_path = os.fspath(list_path)
  real_root = os.path.realpath(root)
  paths, labels, missing = [], [], []
  real_dirs: dict[str, str] = {}  # Resolving each directory once keeps 10^5 lines fast.
  with open(list_path) as f:
    for line_no, line in enumerate(f, 1):
      line = line.strip()
      if not line:
        continue
      parts = line.rsplit(None, 1)
      where = f"{list_path}:{line_no}"
      if len(parts) != 2:
        raise ValueError(f"{where}: expected 'relative/path label', got {line!r}")
      rel, label = parts
      try:
        labels.append(int(label))
      except ValueError:
        raise ValueError(f"{where}: label {label!r} is not an integer") from None
      if os.path.isabs(rel) or rel.startswith(("/", "\\")):
        raise ValueError(f"{where}: absolute path {rel!r} refused; paths must be "
                         f"relative to {real_root}")
      norm = os.path.normpath(rel)
      if norm == ".." or norm.startswith(".." + os.sep):
        raise ValueError(f"{where}: path {rel!r} climbs out of the root {real_root}")
      directory, filename = os.path.split(os.path.join(real_root, norm))
      if directory not in real_dirs:
        real_dirs[directory] = os.path.realpath(directory)
      full = os.path.join(real_dirs[directory], filename)
      if os.path.islink(full):
        full = os.path.realpath(full)
      if not full.startswith(real_root + os.sep):
        raise ValueError(f"{where}: {rel!r} resolves to {full}, outside the root "
                         f"{real_root} (a symlink out?)")
      if not os.path.isfile(full):
        missing.append(f"{rel} (line {line_no})")
      paths.append(full)
  if missing:
    raise ValueError(f"{list_path} names {len(missing)} file(s) that do not exist under "
                     f"{real_root}, e.g. {missing[:5]}")
  if not paths:
    raise ValueError(f"split list {list_path} is empty")
  labels = profiles.check_labels(np.asarray(labels), num_classes, f"labels in {list_path}")
  return paths, labels


def _class_names_from_paths(paths: list[str], labels: np.ndarray, root: str,
                            num_classes: int) -> list[str]:
  """A class's name: the folders of its first file below the split folder, e.g. 'n01440764'."""
  names = [str(c) for c in range(num_classes)]
  seen = set()
  for path, label in zip(paths, labels):
    if label in seen:
      continue
    seen.add(label)
    parts = pathlib.PurePath(os.path.relpath(path, root)).parts
    folders = parts[1:-1] if len(parts) > 2 else parts[:-1]
    if folders:
      names[label] = "/".join(folders)
  return names


def _load_split_lists(name: str, *, data_dir: str | None, split_list_dir: str | None,
                      image_size: int | None) -> LongTailDataset:
  defaults = DATASET_DEFAULTS[name]
  if data_dir is None:
    raise ValueError(f"{name} needs data_dir=<image root> (and split_list_dir=<folder of "
                     f"{defaults['list_prefix']}_*.txt>, default data_dir)")
  root = os.path.realpath(os.path.expanduser(data_dir))
  if not os.path.isdir(root):
    raise ValueError(f"{name}: data_dir {root!r} is not a directory")
  list_dir = os.path.expanduser(split_list_dir or data_dir)
  num_classes = defaults["num_classes"]
  lists = {}
  for split in ("train", "val", "test"):
    path = os.path.join(list_dir, f"{defaults['list_prefix']}_{split}.txt")
    if os.path.exists(path):
      lists[split] = read_split_list(path, root, num_classes)
    elif split != "val":
      raise ValueError(f"{name}: split list {path} does not exist")
  train_paths, train_labels = lists["train"]
  size = image_size or defaults["image_size"]
  transform = defaults["transform"]

  def train_stream(global_batch, seed, epoch, start_step=0, rows=None):
    return streaming_lib.file_list_train_stream(
        train_paths, train_labels, global_batch, seed, epoch, start_step,
        image_size=size, transform=transform, rows=rows)

  def test_stream(batch, split="test", rows=None):
    if split not in lists or split == "train":
      raise ValueError(f"{name} has no {split!r} evaluation split; have "
                       f"{[s for s in lists if s != 'train']}")
    paths, labels = lists[split]
    return streaming_lib.file_list_eval_stream(paths, labels, batch, image_size=size,
                                               transform=transform, rows=rows)

  return LongTailDataset(
      name=name, num_classes=num_classes,
      class_names=_class_names_from_paths(train_paths, train_labels, root, num_classes),
      train_counts=np.bincount(train_labels, minlength=num_classes),
      image_shape=(size, size, 3), mean=dataset_lib.IMAGENET_MEAN,
      std=dataset_lib.IMAGENET_STD, streaming=True,
      info={"source": f"split_lists:{defaults['list_prefix']}", "root": root,
            "num_test": len(lists["test"][1]), "transform": transform},
      train_stream_fn=train_stream, test_stream_fn=test_stream)


def _load_folder_streaming(*, data_dir: str | None, image_size: int | None) -> LongTailDataset:
  """An image folder streamed from its files as it is (no subsampling)."""
  source = _ImageFolderSource(data_dir)
  index = {n: i for i, n in enumerate(source.class_names)}

  def files(split):
    examples = source.splits[split]
    return ([os.path.join(source.root, rel) for rel, _ in examples],
            np.asarray([index[label] for _, label in examples], np.int64))

  train_paths, train_labels = files("train")
  if image_size is None:
    raise ValueError("image_folder with streaming=True needs image_size")

  def train_stream(global_batch, seed, epoch, start_step=0, rows=None):
    return streaming_lib.file_list_train_stream(
        train_paths, train_labels, global_batch, seed, epoch, start_step,
        image_size=image_size, transform="pad_crop", rows=rows)

  def test_stream(batch, split="test", rows=None):
    if split != "test":
      raise ValueError(f"a streamed image folder has only the 'test' split, not {split!r}")
    paths, labels = files(source.test_split)
    return streaming_lib.file_list_eval_stream(paths, labels, batch, image_size=image_size,
                                               transform="pad_crop", rows=rows)

  return LongTailDataset(
      name="image_folder", num_classes=source.num_classes, class_names=source.class_names,
      train_counts=source.pool_counts(), image_shape=(image_size, image_size, 3),
      mean=dataset_lib.IMAGENET_MEAN, std=dataset_lib.IMAGENET_STD, streaming=True,
      info={"source": "image_folder", "root": source.root, "transform": "pad_crop",
            "num_test": len(source.splits[source.test_split])},
      train_stream_fn=train_stream, test_stream_fn=test_stream)


def _load_inat(*, data_dir: str | None, image_size: int | None,
               cache_dir: pathlib.Path) -> LongTailDataset:
  """tfds `i_naturalist2018`: long-tailed as it comes; its validation split is the test set."""
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  defaults = DATASET_DEFAULTS["inat2018"]
  builder = tfds.builder(defaults["tfds_name"], data_dir=data_dir)
  builder.download_and_prepare()
  num_classes = builder.info.features["label"].num_classes
  # Counting 437k labels takes a while: cache the counts.
  identity = {"source": f"tfds:{defaults['tfds_name']}", "data_dir": builder.data_dir,
              "what": "train_counts"}
  key = cache.cache_key(identity)
  path = cache_dir / "sources" / f"inat2018-counts-{key[:16]}.npz"
  arrays = cache.read(path, key)
  if arrays is None:
    counts = streaming_lib.tfds_label_counts(builder, "train", num_classes)
    arrays = {"train_counts": counts}
    cache.write(path, key, arrays, identity)
  size = image_size or defaults["image_size"]
  transform = defaults["transform"]

  def train_stream(global_batch, seed, epoch, start_step=0, rows=None):
    return streaming_lib.tfds_train_stream(
        builder, "train", global_batch, seed, epoch, start_step, image_size=size,
        transform=transform, rows=rows)

  def test_stream(batch, split="test", rows=None):
    if split != "test":
      raise ValueError(f"inat2018 has only the 'test' evaluation split, not {split!r}")
    return streaming_lib.tfds_eval_stream(builder, "validation", batch, image_size=size,
                                          transform=transform, rows=rows)

  return LongTailDataset(
      name="inat2018", num_classes=num_classes,
      class_names=list(builder.info.features["label"].names),
      train_counts=arrays["train_counts"], image_shape=(size, size, 3),
      mean=dataset_lib.IMAGENET_MEAN, std=dataset_lib.IMAGENET_STD, streaming=True,
      info={"source": "tfds:i_naturalist2018", "transform": transform,
            "test_split": "validation"},
      train_stream_fn=train_stream, test_stream_fn=test_stream)


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
      "imagenet_lt": lambda: _load_split_lists(
          "imagenet_lt", data_dir=data_dir, split_list_dir=split_list_dir,
          image_size=image_size),
      "places_lt": lambda: _load_split_lists(
          "places_lt", data_dir=data_dir, split_list_dir=split_list_dir,
          image_size=image_size),
      "inat2018": lambda: _load_inat(data_dir=data_dir, image_size=image_size,
                                     cache_dir=cache_root),
  }
  if name in streaming_loaders:
    return streaming_loaders[name]()
  if name == "image_folder" and streaming:
    return _load_folder_streaming(data_dir=data_dir, image_size=image_size)

  if name == "digits_lt":
    source = _DigitsSource(cache_root)
  elif name == "image_folder":
    source = _ImageFolderSource(data_dir)
  else:
    source = _TfdsCifarSource(name, data_dir)
  return _load_in_memory(source, imbalance=imbalance, profile=profile, seed=seed,
                         val_per_class=val_per_class, n_max=n_max, cache_dir=cache_root)
