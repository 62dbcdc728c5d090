"""Decoding a tfds split into numpy: the balanced pool an in-memory source starts from."""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

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


def tfds_split_to_numpy(builder: Any, split: str, order_key: str, desc: str,
                        progress: bool = True) -> tuple[np.ndarray, np.ndarray]:
  """Decodes a whole tfds split into (uint8 images, int64 labels), sorted by `order_key`,
  with a progress bar named `desc` unless `progress` is False.

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
    with tqdm.tqdm(total=total, desc=desc, unit="img", leave=False,
                   disable=not progress) as bar:
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
