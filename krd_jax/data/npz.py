"""Datasets as .npz files: written atomically, read without pickles or TensorFlow.

`save_arrays` / `load_arrays` are the public pair (an in-memory dataset to one file
and back); `cache.py` keys and verifies the same files for the decoded-data cache.
"""

from __future__ import annotations

import json
import os
import tempfile

import numpy as np

from krd_jax.data.dataset import ARRAY_FIELDS
from krd_jax.data.dataset import ARRAYS_FORMAT
from krd_jax.data.dataset import LongTailDataset


def dataset_to_arrays(ds: LongTailDataset) -> dict[str, np.ndarray]:
  """The arrays and metadata of an in-memory dataset, ready for `np.savez`."""
  if ds.streaming:
    raise ValueError(f"{ds.name!r} is a streaming dataset; only in-memory ones can be saved")
  meta = {
      "format": ARRAYS_FORMAT, "name": ds.name, "num_classes": ds.num_classes,
      "class_names": ds.class_names, "image_shape": list(ds.image_shape),
      "info": ds.info,
  }
  arrays = {field: getattr(ds, field) for field in ARRAY_FIELDS}
  arrays.update(train_counts=ds.train_counts, mean=ds.mean, std=ds.std,
                meta=np.asarray(json.dumps(meta)))
  return arrays


def dataset_from_arrays(arrays: dict[str, np.ndarray]) -> LongTailDataset:
  """Inverse of `dataset_to_arrays`; raises ValueError on a malformed file."""
  try:
    meta = json.loads(str(arrays["meta"]))
  except (KeyError, ValueError) as e:
    raise ValueError(f"not a krd_jax dataset file (no readable metadata): {e}") from None
  if meta.get("format") != ARRAYS_FORMAT:
    raise ValueError(f"dataset file format {meta.get('format')} is not {ARRAYS_FORMAT}")
  missing = [k for k in (*ARRAY_FIELDS, "train_counts", "mean", "std") if k not in arrays]
  if missing:
    raise ValueError(f"dataset file lacks arrays {missing}")
  return LongTailDataset(
      name=meta["name"], num_classes=meta["num_classes"], class_names=meta["class_names"],
      image_shape=tuple(meta["image_shape"]), info=meta["info"],
      train_counts=arrays["train_counts"], mean=arrays["mean"], std=arrays["std"],
      **{field: arrays[field] for field in ARRAY_FIELDS})


def write_npz_atomic(path: str | os.PathLike, arrays: dict[str, np.ndarray],
                     compressed: bool = False) -> None:
  """Writes an .npz at exactly `path` (zip-deflated where `compressed`), via a temporary
  file and a rename.

  A reader never sees a half-written file: either the old one or the new one.
  """
  path = os.fspath(path)
  directory = os.path.dirname(os.path.abspath(path))
  os.makedirs(directory, exist_ok=True)
  fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".npz", dir=directory)
  try:
    with os.fdopen(fd, "wb") as f:
      (np.savez_compressed if compressed else np.savez)(f, **arrays)
      f.flush()
      os.fsync(f.fileno())
    # mkstemp creates the file 0600; give it the permissions a plain open() would.
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)
    os.replace(tmp, path)
  except BaseException:
    if os.path.exists(tmp):
      os.unlink(tmp)
    raise


def read_npz(path: str | os.PathLike) -> dict[str, np.ndarray]:
  """Reads every array of an .npz into memory (no pickles allowed)."""
  with np.load(os.fspath(path), allow_pickle=False) as data:
    return {k: data[k] for k in data.files}


def save_arrays(ds: LongTailDataset, path: str | os.PathLike,
                compressed: bool = False) -> None:
  """Saves an in-memory dataset to one .npz file (written atomically).

  Args:
    ds: an in-memory `LongTailDataset`.
    path: the file to write, used as given (no suffix added).
    compressed: deflate the arrays (lossless; smaller, slower to write and read), e.g.
      to carry a dataset to another machine.
  """
  write_npz_atomic(path, dataset_to_arrays(ds), compressed)


def load_arrays(path: str | os.PathLike) -> LongTailDataset:
  """Loads a dataset written by `save_arrays`; needs numpy only, never TensorFlow.

  Raises:
    ValueError: the file is not a readable krd_jax dataset file.
  """
  try:
    arrays = read_npz(path)
  except (OSError, ValueError, EOFError) as e:
    raise ValueError(f"cannot read dataset file {os.fspath(path)!r}: {e}") from None
  except Exception as e:  # zipfile.BadZipFile and friends from a truncated file.
    raise ValueError(f"cannot read dataset file {os.fspath(path)!r}: {e!r}") from None
  return dataset_from_arrays(arrays)
