"""Class-count priors: label prior, class weights, margins and ETF anchors.

Everything here runs on the host in numpy, once per run, from the integer
training-set class counts n_c. The results are small constant arrays that the
losses in `krd_jax.losses` take as arguments (a loss never reads counts or
config itself).

The KRDistill equations are not published in a form available to us; the
definitions below follow our reconstruction in docs/method.md ("Two balanced
priors") and the cited baselines.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax.numpy as jnp
import numpy as np

from krd_jax.data import profiles

__all__ = [
    "aligned_etf",
    "balance_weights",
    "balanced_center",
    "effective_number_weights",
    "group_matrix",
    "log_group_prior",
    "label_prior",
    "ldam_margins",
    "log_prior",
    "pad_features",
    "simplex_etf",
    "validate_counts",
]

ArrayLike = Any  # np.ndarray, jax.Array, or a (nested) sequence of numbers.


def validate_counts(counts: ArrayLike | Sequence[int],
                    num_classes: int | None = None) -> np.ndarray:
  """Checks training-set class counts and returns them as int64.

  Args:
    counts: one count per class, shape [C]; integers (or integral floats) > 0.
    num_classes: if given, C must equal it.

  Returns:
    The counts as a 1-D int64 numpy array of length C.

  Raises:
    ValueError: if counts is not 1-D, has the wrong length, or any class has a
      count that is not a positive integer; the message names those classes.

  References:
    docs/method.md (notation: counts n_c, prior pi_c = n_c / sum n).
  """
  arr = np.asarray(counts)
  if arr.ndim != 1 or arr.size == 0:
    raise ValueError(
        f"class counts must be a non-empty 1-D array, one per class; got shape "
        f"{arr.shape}")
  if num_classes is not None and arr.size != num_classes:
    raise ValueError(
        f"class counts has {arr.size} entries but num_classes={num_classes}")
  if arr.dtype == bool or not (np.issubdtype(arr.dtype, np.integer)
                               or np.issubdtype(arr.dtype, np.floating)):
    raise ValueError(
        f"class counts must be positive integers; got dtype {arr.dtype}")
  with np.errstate(invalid="ignore"):
    good = np.isfinite(arr) & (arr > 0) & (np.floor(arr) == arr)
  if not good.all():
    bad = np.flatnonzero(~good)
    raise ValueError(
        f"class counts must be positive integers; classes {bad.tolist()} have "
        f"{arr[bad].tolist()}")
  return arr.astype(np.int64)


def label_prior(counts: ArrayLike) -> np.ndarray:
  """Training label prior pi_c = n_c / sum(n).

  Args:
    counts: class counts [C], see `validate_counts`.

  Returns:
    float64 [C], sums to one.

  References:
    docs/method.md, notation; Menon et al. 2021, "Long-tail learning via
    logit adjustment", section 2.
  """
  n = validate_counts(counts).astype(np.float64)
  return n / n.sum()


def log_prior(counts: ArrayLike) -> np.ndarray:
  """log(pi_c), the term that logit adjustment subtracts (or adds).

  Args:
    counts: class counts [C].

  Returns:
    float32 [C] (computed in float64, then cast).

  References:
    Menon et al. 2021, Eq. (9)-(10) (post-hoc and loss logit adjustment).
  """
  return np.log(label_prior(counts)).astype(np.float32)


def effective_number_weights(counts: ArrayLike,
                             beta: float = 0.9999) -> np.ndarray:
  """Class-balanced weights (1 - b) / (1 - b^n_c), normalised to sum C.

  Used by class-balanced CE, by DRW once its switch epoch is reached, and by
  BKD to reweight the teacher's probabilities.

  Args:
    counts: class counts [C].
    beta: b in [0, 1); 0 gives all-ones weights, b -> 1 gives inverse
      frequency.

  Returns:
    float32 [C], positive, summing to C.

  References:
    Cui et al. 2019, "Class-Balanced Loss Based on Effective Number of
    Samples", Eq. (3) (effective number) and section 4 (normalisation to C).
  """
  if not 0.0 <= beta < 1.0:
    raise ValueError(f"beta must be in [0, 1); got {beta}")
  n = validate_counts(counts).astype(np.float64)
  # 1 - b^n = -expm1(n log b): exact where b^n is close to one (small n).
  effective_num = -np.expm1(n * np.log(beta)) if beta > 0 else np.ones_like(n)
  w = (1.0 - beta) / effective_num
  return (w * (n.size / w.sum())).astype(np.float32)


def balance_weights(counts: ArrayLike, rho: float) -> np.ndarray:
  """Balanced per-class sample weights w_c proportional to pi_c^(-rho).

  Scaled so that sum_c pi_c w_c = 1, i.e. a sample drawn from the training
  distribution has expected weight one (and uniform counts give all ones).
  Only ratios matter downstream: `krd_jax.losses.balanced_mean` normalises the
  weights to average one over each batch. rho = 0 is the plain mean; rho = 1
  makes every class count equally in expectation.

  Args:
    counts: class counts [C].
    rho: balancing exponent, >= 0.

  Returns:
    float32 [C], positive.

  References:
    docs/method.md, "Averaging and the total" (our reconstruction).
  """
  if rho < 0:
    raise ValueError(f"rho must be >= 0; got {rho}")
  pi = label_prior(counts)
  w = pi**(-rho)
  return (w / np.sum(pi * w)).astype(np.float32)


def group_matrix(counts: ArrayLike, split: str = "tercile") -> np.ndarray:
  """One-hot membership [C, G] of each class in its group (head / medium / tail).

  Args:
    counts: training images per class [C].
    split: "tercile" (classes ranked by count, cut in thirds) or "absolute"
      (many > 100, few < 20 images), as `krd_jax.data.profiles.class_groups`.

  Returns:
    float32 [C, G], G <= 3 the non-empty groups in head-to-tail order (a small set
    has no many-shot group under the absolute split: it is left out).
  """
  names = profiles.class_groups(validate_counts(counts), split)
  present = [g for g in profiles.GROUPS[split] if g in set(names)]
  return np.stack([names == g for g in present], axis=1).astype(np.float32)


def log_group_prior(counts: ArrayLike, groups: ArrayLike) -> np.ndarray:
  """log of each group's share of the training images [G] (float32)."""
  counts = validate_counts(counts).astype(np.float64)
  share = counts @ np.asarray(groups, np.float64) / counts.sum()
  return np.log(share).astype(np.float32)


def ldam_margins(counts: ArrayLike, max_margin: float = 0.5) -> np.ndarray:
  """LDAM per-class margins m_c proportional to n_c^(-1/4), largest max_margin.

  Args:
    counts: class counts [C].
    max_margin: the margin of the rarest class (C in the paper's notation).

  Returns:
    float32 [C].

  References:
    Cao et al. 2019, "Learning Imbalanced Datasets with Label-Distribution-
    Aware Margin Loss", Eq. (13).
  """
  if max_margin <= 0:
    raise ValueError(f"max_margin must be > 0; got {max_margin}")
  m = validate_counts(counts).astype(np.float64) ** -0.25
  return (m * (max_margin / m.max())).astype(np.float32)


def balanced_center(class_means: ArrayLike) -> np.ndarray:
  """The balanced centre mu: the unweighted mean of the class means.

  Unlike the frequency-weighted mean of all features, it does not lean toward
  the head classes.

  Args:
    class_means: [C, d] per-class feature means (e.g. of the teacher).

  Returns:
    float32 [d] (averaged in float64).

  References:
    docs/method.md, "Two balanced priors" (over features; mu).
  """
  means = _check_class_means(class_means)
  return means.mean(axis=0).astype(np.float32)


def class_mean_anchors(class_means: ArrayLike) -> np.ndarray:
  """The teacher's own class directions as RRD anchors: column c is the unit vector of
  class c's mean minus the balanced centre. Unlike an ETF they keep the teacher's
  class geometry (similar classes stay close); the centring is what balances them.

  Args:
    class_means: [C, d] per-class means of the teacher's training features.

  Returns:
    float32 [d, C], unit columns.

  References:
    docs/method.md, "Two balanced priors" (`anchor="class_means"`: rectifying toward
    the teacher's centred class means rather than an ETF).
  """
  means = _check_class_means(class_means)
  centred = means - means.mean(axis=0)
  norms = np.linalg.norm(centred, axis=1, keepdims=True)
  if np.any(norms < 1e-12):
    raise ValueError("class_means: a class mean equals the balanced centre, so it has "
                     "no direction to use as an anchor")
  return (centred / norms).T.astype(np.float32)


def pad_features(features: ArrayLike, dim: int) -> Any:
  """Zero-pads the last axis of `features` up to `dim` (numpy or jax).

  Args:
    features: [..., d] with d <= dim.
    dim: the target size of the last axis.

  Returns:
    [..., dim]: a numpy array for numpy input, a jax array otherwise (usable
    inside jit).

  References:
    docs/method.md: an ETF of C classes needs d >= C, so features with
    d < C are zero-padded to R^C.
  """
  d = features.shape[-1]
  if d > dim:
    raise ValueError(
        f"features has last dimension {d}, larger than the target dim {dim}")
  if d == dim:
    return features
  xp = np if isinstance(features, np.ndarray) else jnp
  widths = [(0, 0)] * (features.ndim - 1) + [(0, dim - d)]
  return xp.pad(features, widths)


def simplex_etf(num_classes: int, dim: int, seed: int = 0) -> np.ndarray:
  """A seeded random simplex ETF, M = sqrt(C/(C-1)) U (I - 11^T/C).

  Args:
    num_classes: C >= 2.
    dim: feature dimension d; the frame lives in D = max(d, C) dimensions.
    seed: seed for the random orthonormal U [D, C].

  Returns:
    float32 [D, C]; unit-norm columns with pairwise cosine -1/(C-1).

  References:
    Papyan et al. 2020, "Prevalence of neural collapse...", Definition 1;
    docs/method.md, "Two balanced priors" (the seeded random option).
  """
  c = _check_num_classes(num_classes)
  big_d = max(int(dim), c)
  rng = np.random.default_rng(seed)
  u, _ = np.linalg.qr(rng.standard_normal((big_d, c)))
  return _etf_from_basis(u)


def aligned_etf(class_means: ArrayLike) -> np.ndarray:
  """The simplex ETF nearest to given class means (orthogonal Procrustes).

  The means are centred by their unweighted mean (`balanced_center`) and
  zero-padded to D = max(d, C) dimensions, giving X [D, C]. Among all ETFs
  M = s U P (s = sqrt(C/(C-1)), P = I - 11^T/C, U^T U = I), ||M - aX||_F is
  minimised for every a > 0 by maximising tr(U^T X P), i.e. by U the polar
  factor of X P (= X, as X's columns sum to zero).

  Args:
    class_means: [C, d] per-class means of the teacher's training features.

  Returns:
    float32 [D, C], D = max(d, C); anchor m_c is column c.

  References:
    Schoenemann 1966, "A generalized solution of the orthogonal Procrustes
    problem"; docs/method.md, "Two balanced priors" (Procrustes-aligned U).
  """
  means = _check_class_means(class_means)
  c, d = means.shape
  _check_num_classes(c)
  centred = means - means.mean(axis=0)
  x = pad_features(centred, max(d, c)).T  # [D, C]
  p = np.eye(c) - 1.0 / c
  a, _, bt = np.linalg.svd(x @ p, full_matrices=False)
  return _etf_from_basis(a @ bt)


def _etf_from_basis(u: np.ndarray) -> np.ndarray:
  """M = sqrt(C/(C-1)) U (I - 11^T/C) for U [D, C] with orthonormal columns."""
  c = u.shape[1]
  p = np.eye(c) - 1.0 / c
  return (np.sqrt(c / (c - 1.0)) * (u @ p)).astype(np.float32)


def _check_num_classes(num_classes: int) -> int:
  if int(num_classes) != num_classes or num_classes < 2:
    raise ValueError(
        f"num_classes must be an integer >= 2 for a simplex ETF; got "
        f"{num_classes}")
  return int(num_classes)


def _check_class_means(class_means: ArrayLike) -> np.ndarray:
  means = np.asarray(class_means, dtype=np.float64)
  if means.ndim != 2:
    raise ValueError(
        f"class_means must have rank 2 [classes, dim]; got shape {means.shape}")
  if not np.isfinite(means).all():
    bad = np.flatnonzero(~np.isfinite(means).all(axis=1))
    raise ValueError(f"class_means has non-finite rows for classes "
                     f"{bad.tolist()}")
  return means

