"""Streamed long-tailed sources: ImageNet-LT / Places-LT split lists and iNaturalist 2018.

Their batches come from tf.data pipelines (`streaming.py`) over the files as they are;
nothing is subsampled or decoded into memory.
"""

from __future__ import annotations

import os
import pathlib
from typing import Any

import numpy as np

from krd_jax.data import cache
from krd_jax.data import dataset as dataset_lib
from krd_jax.data import profiles
from krd_jax.data import streaming as streaming_lib

LongTailDataset = dataset_lib.LongTailDataset


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


def load_split_lists(name: str, defaults: dict[str, Any], *, data_dir: str | None, split_list_dir: str | None,
                      image_size: int | None) -> LongTailDataset:
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


def load_inat(defaults: dict[str, Any], *, data_dir: str | None, image_size: int | None,
               cache_dir: pathlib.Path, progress: bool = True) -> LongTailDataset:
  """tfds `i_naturalist2018`: long-tailed as it comes; its validation split is the test set."""
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
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
    counts = streaming_lib.tfds_label_counts(builder, "train", num_classes, progress)
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
