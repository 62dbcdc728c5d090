"""Image folders (root/split/label/*.jpg|png): listing, checking, in memory or streamed.

Listing follows `tfds.ImageFolder` without TensorFlow: a class's label is its index in
the sorted class names over all splits. `check_image_folder` refuses a folder whose
image-named files are not whole JPEG or PNG images (unreadable, empty, another format,
or cut short after a valid header), because skipping them would silently change the
class counts the long-tail profile is built from. Files with other extensions are
ignored, as tfds.ImageFolder ignores them, with a warning giving their count.
"""

from __future__ import annotations

import hashlib
import logging
import os

import numpy as np

from krd_jax import checks
from krd_jax.data import dataset as dataset_lib
from krd_jax.data import streaming as streaming_lib
from krd_jax.data.decode import SourceArrays, tfds_split_to_numpy

log = logging.getLogger(__name__)

# What tfds.ImageFolder reads (its _SUPPORTED_IMAGE_FORMAT).
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png")
# Names accepted for an image folder's balanced evaluation split, in order.
TEST_SPLIT_NAMES = ("test", "val", "validation")
_JPEG_START, _JPEG_END = b"\xff\xd8\xff", b"\xff\xd9"
_PNG_START, _PNG_END = b"\x89PNG\r\n\x1a\n", b"IEND\xaeB`\x82"


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


def folder_fingerprint(root: str, splits: dict[str, list[tuple[str, str]]]) -> str:
  """Hash of every listed file's path, size and mtime: a changed folder is a new key."""
  digest = hashlib.sha256()
  for split in sorted(splits):
    for rel, _ in splits[split]:
      stat = os.stat(os.path.join(root, rel))
      digest.update(f"{rel}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
  return digest.hexdigest()


class ImageFolderSource:
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
                     "files": folder_fingerprint(self.root, self.splits)}

  def _counts(self, split: str) -> np.ndarray:
    index = {n: i for i, n in enumerate(self.class_names)}
    labels = [index[label] for _, label in self.splits[split]]
    return np.bincount(labels, minlength=self.num_classes).astype(np.int64)

  def pool_counts(self) -> np.ndarray:
    return self._pool_counts

  def load(self, progress: bool = True) -> SourceArrays:
    import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
    builder = tfds.ImageFolder(self.root)
    if list(builder.info.features["label"].names) != self.class_names:
      raise ValueError("tfds.ImageFolder found other classes than the folder listing; "
                       "did the folder change while loading?")
    pool = tfds_split_to_numpy(builder, "train", "image/filename", "image folder train",
                               progress)
    test = tfds_split_to_numpy(builder, self.test_split, "image/filename",
                               f"image folder {self.test_split}", progress)
    for (images, labels), split in ((pool, "train"), (test, self.test_split)):
      if not np.array_equal(np.bincount(labels, minlength=self.num_classes),
                            self._counts(split)):
        raise ValueError(f"decoded {split} labels do not match the folder listing")
    return SourceArrays(*pool, *test, self.class_names)


def load_streaming(*, data_dir: str | None, image_size: int | None) -> dataset_lib.LongTailDataset:
  """An image folder streamed from its files as it is (no subsampling)."""
  source = ImageFolderSource(data_dir)
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

  return dataset_lib.LongTailDataset(
      name="image_folder", num_classes=source.num_classes, class_names=source.class_names,
      train_counts=source.pool_counts(), image_shape=(image_size, image_size, 3),
      mean=dataset_lib.IMAGENET_MEAN, std=dataset_lib.IMAGENET_STD, streaming=True,
      info={"source": "image_folder", "root": source.root, "transform": "pad_crop",
            "num_test": len(source.splits[source.test_split])},
      train_stream_fn=train_stream, test_stream_fn=test_stream)


def check_image_folder(root: str, max_examples: int = 3) -> None:
  """Refuses an image folder holding image-named files that are not whole images.

  Raises:
    checks.InputError: naming how many such files there are and a few of them.
  """
  root = os.path.realpath(os.path.expanduser(root))
  bad, ignored = [], []
  for split in sorted(e.name for e in os.scandir(root) if e.is_dir()):
    for label in sorted(e.name for e in os.scandir(os.path.join(root, split)) if e.is_dir()):
      for entry in os.scandir(os.path.join(root, split, label)):
        rel = f"{split}/{label}/{entry.name}"
        if not entry.name.lower().endswith(IMAGE_EXTENSIONS):
          ignored.append(rel)
        elif not is_whole_image(entry.path):
          bad.append(rel)
  if ignored:
    log.warning("image folder %s: ignoring %d file(s) without an image extension "
                "(e.g. %s)", root, len(ignored), ", ".join(sorted(ignored)[:max_examples]))
  if bad:
    checks.fail("data.data_dir", root,
                f"a folder whose .jpg/.jpeg/.png files are all whole JPEG or PNG images; "
                f"{len(bad)} are unreadable, cut short or not images (e.g. "
                f"{', '.join(sorted(bad)[:max_examples])}): fix or remove them")


def is_whole_image(path: str) -> bool:
  """Whether `path` starts and ends as a JPEG or PNG does (its first bytes and its end
  marker: JPEG's EOI, PNG's IEND chunk), so a file cut short is caught without decoding.

  Trailing zero or whitespace padding after the end marker (some cameras and tools
  write it) is allowed.
  """
  try:
    with open(path, "rb") as f:
      head = f.read(8)
      f.seek(0, os.SEEK_END)
      f.seek(max(0, f.tell() - 64))
      tail = f.read().rstrip(b"\x00 \t\r\n")
  except OSError:
    return False
  if head.startswith(_JPEG_START):
    return tail.endswith(_JPEG_END)
  if head.startswith(_PNG_START):
    return tail.endswith(_PNG_END)
  return False
