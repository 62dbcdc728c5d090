"""The embedded default dataset: scikit-learn's bundled 8x8 digits, split for long tails.

The digits ship inside the scikit-learn wheel, so this dataset needs no network.
This module (numpy only) fixes the balanced test hold-out; `digits_tfds.KrdDigits`
writes the split as a real tfds dataset on first use.

References:
  Alpaydin & Kaynak, "Optical Recognition of Handwritten Digits", UCI Machine
  Learning Repository, 1998 (the test half that scikit-learn ships).
"""

from __future__ import annotations

import numpy as np

NUM_CLASSES = 10
# Balanced test images per class, held out before any long-tail subsampling. The
# smallest class has 174 images, leaving 144 per class for the long-tailed pool.
TEST_PER_CLASS = 30
# The hold-out is fixed (not the run seed): every run is scored on the same test set.
HOLDOUT_SEED = 0
# sklearn's digits count ink in 0..16 per pixel.
_MAX_INK = 16


def digits_arrays() -> tuple[np.ndarray, np.ndarray]:
  """All 1797 digits as uint8 [N, 8, 8, 1] (0..16 ink rescaled to 0..255) and int64 labels."""
  from sklearn import datasets  # pylint: disable=g-import-not-at-top
  digits = datasets.load_digits()
  images = np.round(digits.images * (255.0 / _MAX_INK)).astype(np.uint8)[..., None]
  return images, digits.target.astype(np.int64)


def balanced_holdout(labels: np.ndarray, per_class: int,
                     seed: int) -> tuple[np.ndarray, np.ndarray]:
  """Splits indices into (pool, test) with `per_class` test images of every class."""
  rng = np.random.default_rng(seed)
  test = []
  for c in range(int(labels.max()) + 1):
    members = np.flatnonzero(labels == c)
    test.append(rng.choice(members, per_class, replace=False))
  test = np.sort(np.concatenate(test))
  pool = np.setdiff1d(np.arange(len(labels)), test)
  return pool, test


def pool_counts() -> np.ndarray:
  """Training-pool images per class (before any long-tail subsampling)."""
  _, labels = digits_arrays()
  pool, _ = balanced_holdout(labels, TEST_PER_CLASS, HOLDOUT_SEED)
  return np.bincount(labels[pool], minlength=NUM_CLASSES)
