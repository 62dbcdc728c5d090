"""Long-tail profiles, deterministic per-class subsampling and class groups.

Pure numpy: no TensorFlow, no JAX. These functions are the single source of truth
for "which training images does a long-tailed run see" and "which classes are
head / tail", so every dataset in `krd_jax.data` goes through them.

References:
  Cao et al., "Learning Imbalanced Datasets with Label-Distribution-Aware Margin
  Loss", NeurIPS 2019 (the CIFAR-LT construction used by LDAM-DRW and most
  long-tailed distillation papers since).
  Liu et al., "Large-Scale Long-Tailed Recognition in an Open World", CVPR 2019
  (many / medium / few-shot groups at 100 and 20 images).
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np

PROFILES = ("exp", "step")

GROUPS = {
    "absolute": ("many", "medium", "few"),
    "tercile": ("head", "middle", "tail"),
}

# Thresholds of the absolute split (Liu et al. 2019): more than 100 training images
# is many-shot, fewer than 20 is few-shot; exactly 100 and exactly 20 are medium.
MANY_SHOT_ABOVE = 100
FEW_SHOT_BELOW = 20


def check_imbalance(imbalance: float) -> float:
  """Returns `imbalance` as a float, or raises ValueError unless it is finite and >= 1."""
  try:
    value = float(imbalance)
  except (TypeError, ValueError):
    raise ValueError(f"imbalance factor must be a number >= 1, got {imbalance!r}") from None
  if not math.isfinite(value) or value < 1.0:
    raise ValueError(
        f"imbalance factor must be finite and >= 1 (n_max / n_min), got {imbalance!r}")
  return value


def long_tail_counts(
    n_max: int,
    num_classes: int,
    imbalance: float,
    profile: str = "exp",
) -> np.ndarray:
  """Per-class training-set sizes of a long-tailed profile; class 0 is the head.

  Args:
    n_max: images kept for the most frequent class (class 0).
    num_classes: number of classes C.
    imbalance: imbalance factor IF = n_max / n_min, >= 1.
    profile: "exp": n_i = int(n_max * IF^(-i / (C - 1))), the LDAM-DRW formula,
      computed as LDAM does, `n_max * (1 / IF) ** (i / (C - 1))`, so the integer
      truncation matches the published sizes (CIFAR-10-LT IF=100: 12406 images).
      "step": the first C // 2 classes keep n_max, the other C - C // 2 (the
      extra class of an odd C goes to the tail) keep int(n_max / IF).

  Returns:
    np.int64 array [C] of counts. It may contain zeros for an extreme IF; the
    loaders reject such a profile, this function only computes it.

  Raises:
    ValueError: for IF < 1, an unknown profile, n_max < 1 or num_classes < 1.
  """
  imbalance = check_imbalance(imbalance)
  if profile not in PROFILES:
    raise ValueError(f"unknown long-tail profile {profile!r}; expected one of {PROFILES}")
  if int(n_max) < 1:
    raise ValueError(f"n_max must be >= 1, got {n_max}")
  if int(num_classes) < 1:
    raise ValueError(f"num_classes must be >= 1, got {num_classes}")
  n_max, num_classes = int(n_max), int(num_classes)
  if num_classes == 1:
    return np.array([n_max], dtype=np.int64)
  if profile == "exp":
    ratio = 1.0 / imbalance
    counts = [int(n_max * ratio ** (i / (num_classes - 1.0))) for i in range(num_classes)]
  else:
    num_head = num_classes // 2
    counts = [n_max] * num_head + [int(n_max / imbalance)] * (num_classes - num_head)
  return np.asarray(counts, dtype=np.int64)


def check_labels(labels: np.ndarray, num_classes: int, what: str = "labels") -> np.ndarray:
  """Returns `labels` as a 1-D int64 array, or raises ValueError naming bad values.

  Args:
    labels: integer class labels.
    num_classes: C; every label must lie in [0, C).
    what: how to name the array in the error message.

  Returns:
    The labels as np.int64 [N].
  """
  labels = np.asarray(labels)
  if labels.ndim != 1:
    raise ValueError(f"{what} must be 1-D, got shape {labels.shape}")
  if labels.size and not np.issubdtype(labels.dtype, np.integer):
    raise ValueError(f"{what} must be integers, got dtype {labels.dtype}")
  labels = labels.astype(np.int64)
  bad = (labels < 0) | (labels >= num_classes)
  if bad.any():
    raise ValueError(
        f"{what} outside [0, {num_classes}): {np.unique(labels[bad])[:10].tolist()} "
        f"({int(bad.sum())} example(s), first at index {int(np.flatnonzero(bad)[0])})")
  return labels


def _class_orders(labels: np.ndarray, num_classes: int, seed: int) -> list[np.ndarray]:
  """Each class's example indices in a seeded random order.

  Each class has its own generator, seeded by (seed, class), so the images picked
  for one class do not depend on how many classes come before it.
  """
  orders = []
  for c in range(num_classes):
    members = np.flatnonzero(labels == c)
    np.random.default_rng([int(seed), c]).shuffle(members)
    orders.append(members)
  return orders


def _check_seed(seed: int) -> int:
  if int(seed) != seed or int(seed) < 0:
    raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
  return int(seed)


def check_pool_fills(available: np.ndarray, counts: np.ndarray) -> None:
  """Raises ValueError naming the first class whose pool has fewer images than the
  profile asks for (`available`, `counts`: [C])."""
  short = np.flatnonzero(np.asarray(available) < np.asarray(counts))
  if short.size:
    c = int(short[0])
    raise ValueError(
        f"class {c} has {available[c]} example(s) but the profile asks for {counts[c]} "
        f"({short.size} class(es) short); lower n_max")


def long_tail_indices(
    labels: np.ndarray,
    counts: Sequence[int] | np.ndarray,
    seed: int,
) -> np.ndarray:
  """Indices of a long-tailed subset: the first n_c of each class's seeded shuffle.

  Args:
    labels: int [N] labels of the balanced pool, in [0, C) with C = len(counts).
    counts: n_c to keep per class (from `long_tail_counts`).
    seed: non-negative integer; the same seed always picks the same images.

  Returns:
    np.int64 [sum(counts)] indices into `labels`, sorted ascending.

  Raises:
    ValueError: labels outside [0, C), a negative count, or a class with fewer
      than n_c examples in the pool.
  """
  counts = np.asarray(counts, dtype=np.int64)
  labels = check_labels(labels, len(counts))
  seed = _check_seed(seed)
  if (counts < 0).any():
    raise ValueError(f"counts must be >= 0, got {counts.tolist()}")
  check_pool_fills(np.bincount(labels, minlength=len(counts)), counts)
  orders = _class_orders(labels, len(counts), seed)
  picked = [order[:n] for order, n in zip(orders, counts)]
  return np.sort(np.concatenate(picked)).astype(np.int64)


def validation_indices(
    labels: np.ndarray,
    counts: Sequence[int] | np.ndarray,
    val_per_class: int,
    seed: int,
) -> np.ndarray | None:
  """A balanced validation split from the images `long_tail_indices` left out.

  Class c's validation images are positions n_c .. n_c + val_per_class of the
  same seeded shuffle, so they never overlap the long-tailed training images.

  Args:
    labels: int [N] labels of the balanced pool.
    counts: n_c kept for training per class.
    val_per_class: validation images per class.
    seed: the seed given to `long_tail_indices`.

  Returns:
    np.int64 sorted indices, or None when some class has fewer than
    val_per_class left-out images (a balanced split is then impossible).
  """
  counts = np.asarray(counts, dtype=np.int64)
  labels = check_labels(labels, len(counts))
  seed = _check_seed(seed)
  if val_per_class < 0:
    raise ValueError(f"val_per_class must be >= 0, got {val_per_class}")
  if val_per_class == 0:
    return np.zeros((0,), np.int64)
  left_out = np.bincount(labels, minlength=len(counts)) - counts
  if (left_out < val_per_class).any():
    return None
  orders = _class_orders(labels, len(counts), seed)
  picked = [order[n:n + val_per_class] for order, n in zip(orders, counts)]
  return np.sort(np.concatenate(picked)).astype(np.int64)


def class_groups(counts: Sequence[int] | np.ndarray, split: str = "absolute") -> np.ndarray:
  """The group of each class, for per-group accuracies.

  Args:
    counts: training images per class, [C].
    split: "absolute": "many" (n_c > 100), "few" (n_c < 20), "medium" otherwise
      (so 100 and 20 are medium). "tercile": classes ranked by count, most
      frequent first, ties broken by class index (lower index ranks first, which
      for the LDAM profiles is also the head-to-tail order); the ranking is cut
      like `np.array_split` into "head", "middle", "tail", so when C is not a
      multiple of 3 the extra classes go to head first, then middle
      (C = 10: 4 / 3 / 3; C = 11: 4 / 4 / 3). Classes with equal counts can land
      in different terciles; this keeps group sizes fixed for a given C.

  Returns:
    np.ndarray of str [C], values from `GROUPS[split]`.
  """
  counts = np.asarray(counts, dtype=np.int64)
  if counts.ndim != 1:
    raise ValueError(f"counts must be 1-D, got shape {counts.shape}")
  if split == "absolute":
    return np.where(counts > MANY_SHOT_ABOVE, "many",
                    np.where(counts < FEW_SHOT_BELOW, "few", "medium")).astype(str)
  if split == "tercile":
    # Stable sort on -count keeps class-index order among ties.
    ranking = np.argsort(-counts, kind="stable")
    groups = np.empty(len(counts), dtype=object)
    for name, members in zip(GROUPS["tercile"], np.array_split(ranking, 3)):
      groups[members] = name
    return groups.astype(str)
  raise ValueError(f"unknown group split {split!r}; expected one of {tuple(GROUPS)}")
