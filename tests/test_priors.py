"""Tests for krd_jax.priors against independent float64 numpy references."""

import jax.numpy as jnp
import numpy as np
import pytest

from krd_jax import priors


# ------------------------------------------------------- numpy references


def long_tail_counts(num_classes, n_max=500, imbalance=100):
  """CIFAR-LT style profile n_i = int(n_max * IF^(-i / (C - 1)))."""
  i = np.arange(num_classes)
  return (n_max * imbalance ** (-i / (num_classes - 1))).astype(int)


def ref_effective_number(counts, beta):
  n = np.asarray(counts, np.float64)
  w = (1 - beta) / (1 - beta**n)
  return w / w.sum() * len(n)


def ref_etf_gram(num_classes):
  """The Gram matrix every simplex ETF has: 1 on the diagonal, -1/(C-1) off."""
  c = num_classes
  return np.full((c, c), -1.0 / (c - 1)) + np.eye(c) * (1 + 1.0 / (c - 1))


def random_class_means(num_classes, dim, seed):
  rng = np.random.default_rng(seed)
  return rng.normal(size=(num_classes, dim)) + rng.normal(size=dim) * 3


COUNT_CASES = [long_tail_counts(10), long_tail_counts(100, imbalance=50),
               [7, 7, 7], [1, 2]]


# ----------------------------------------------------------- validation


@pytest.mark.parametrize("counts", [[3, 1], np.array([5.0, 2.0]),
                                    np.arange(1, 11, dtype=np.int32)])
def test_validate_counts_accepts_positive_integers(counts):
  out = priors.validate_counts(counts)
  assert out.dtype == np.int64
  np.testing.assert_array_equal(out, np.asarray(counts))


@pytest.mark.parametrize("counts, match", [
    ([5, 0, 3, -2], r"classes \[1, 3\] have \[0, -2\]"),
    ([5.0, 2.5], r"classes \[1\] have \[2.5\]"),
    ([5.0, np.nan, 1.0], r"classes \[1\]"),
    ([[1, 2], [3, 4]], "1-D"),
    ([], "non-empty"),
    ([True, True], "dtype"),
    (["a", "b"], "dtype"),
])
def test_validate_counts_rejects(counts, match):
  with pytest.raises(ValueError, match=match):
    priors.validate_counts(counts)


def test_validate_counts_num_classes():
  with pytest.raises(ValueError, match="num_classes=4"):
    priors.validate_counts([1, 2, 3], num_classes=4)


@pytest.mark.parametrize("fn", [priors.label_prior, priors.log_prior,
                                priors.effective_number_weights,
                                priors.ldam_margins,
                                lambda c: priors.balance_weights(c, 1.0)])
def test_every_prior_validates_counts(fn):
  with pytest.raises(ValueError, match=r"classes \[2\]"):
    fn([4, 3, 0])


# -------------------------------------------------------- label priors


@pytest.mark.parametrize("counts", COUNT_CASES)
def test_label_and_log_prior(counts):
  n = np.asarray(counts, np.float64)
  pi = priors.label_prior(counts)
  assert pi.dtype == np.float64
  np.testing.assert_allclose(pi, n / n.sum(), rtol=1e-12)
  log_pi = priors.log_prior(counts)
  assert log_pi.dtype == np.float32
  np.testing.assert_allclose(log_pi, np.log(n / n.sum()), rtol=1e-6)


@pytest.mark.parametrize("counts", COUNT_CASES)
@pytest.mark.parametrize("beta", [0.0, 0.9, 0.999, 0.9999])
def test_effective_number_weights(counts, beta):
  w = priors.effective_number_weights(counts, beta)
  assert w.dtype == np.float32
  np.testing.assert_allclose(w, ref_effective_number(counts, beta), rtol=1e-5)
  np.testing.assert_allclose(w.sum(), len(counts), rtol=1e-5)


def test_effective_number_weights_favour_tail():
  w = priors.effective_number_weights(long_tail_counts(10))
  assert np.all(np.diff(w) > 0)


@pytest.mark.parametrize("counts", COUNT_CASES)
@pytest.mark.parametrize("rho", [0.0, 0.5, 1.0])
def test_balance_weights_proportional_to_inverse_prior_power(counts, rho):
  w = priors.balance_weights(counts, rho)
  pi = np.asarray(counts, np.float64) / np.sum(counts)
  ref = pi**-rho
  assert w.dtype == np.float32
  np.testing.assert_allclose(w, ref / np.sum(pi * ref), rtol=1e-5)


@pytest.mark.parametrize("rho", [0.0, 0.5, 1.0, 2.0])
def test_uniform_counts_give_unit_balance_weights(rho):
  np.testing.assert_allclose(priors.balance_weights([9] * 10, rho), 1.0,
                             rtol=1e-6)


@pytest.mark.parametrize("counts", COUNT_CASES)
def test_ldam_margins(counts):
  m = priors.ldam_margins(counts, max_margin=0.5)
  ref = np.asarray(counts, np.float64)**-0.25
  np.testing.assert_allclose(m, 0.5 * ref / ref.max(), rtol=1e-6)
  assert m.max() == pytest.approx(0.5)


@pytest.mark.parametrize("call, match", [
    (lambda: priors.effective_number_weights([1, 2], beta=1.0), "beta"),
    (lambda: priors.balance_weights([1, 2], rho=-1.0), "rho"),
    (lambda: priors.ldam_margins([1, 2], max_margin=0.0), "max_margin"),
    (lambda: priors.simplex_etf(1, 4), "num_classes"),
    (lambda: priors.aligned_etf(np.zeros(5)), "class_means"),
    (lambda: priors.aligned_etf([[0.0, np.inf], [1.0, 1.0]]),
     r"classes \[0\]"),
])
def test_bad_arguments(call, match):
  with pytest.raises(ValueError, match=match):
    call()


# --------------------------------------------------------------- ETFs


def assert_simplex_etf(m, num_classes, dim):
  assert m.dtype == np.float32
  assert m.shape == (max(dim, num_classes), num_classes)
  m64 = m.astype(np.float64)
  np.testing.assert_allclose(np.linalg.norm(m64, axis=0), 1.0, atol=1e-5)
  np.testing.assert_allclose(m64.T @ m64, ref_etf_gram(num_classes),
                             atol=1e-5)


ETF_SHAPES = [(10, 16), (10, 4), (100, 64), (100, 128), (2, 3)]


@pytest.mark.parametrize("num_classes, dim", ETF_SHAPES)
def test_simplex_etf_geometry(num_classes, dim):
  assert_simplex_etf(priors.simplex_etf(num_classes, dim, seed=3), num_classes,
                     dim)


def test_simplex_etf_is_seeded():
  np.testing.assert_array_equal(priors.simplex_etf(10, 16, seed=1),
                                priors.simplex_etf(10, 16, seed=1))
  assert not np.allclose(priors.simplex_etf(10, 16, seed=1),
                         priors.simplex_etf(10, 16, seed=2))


@pytest.mark.parametrize("num_classes, dim", ETF_SHAPES)
def test_aligned_etf_geometry(num_classes, dim):
  means = random_class_means(num_classes, dim, seed=0)
  assert_simplex_etf(priors.aligned_etf(means), num_classes, dim)


@pytest.mark.parametrize("num_classes, dim", ETF_SHAPES)
@pytest.mark.parametrize("seed", [0, 1])
def test_aligned_etf_beats_random_etfs(num_classes, dim, seed):
  means = random_class_means(num_classes, dim, seed)
  big_d = max(dim, num_classes)
  centred = means - means.mean(axis=0)
  target = np.zeros((big_d, num_classes))
  target[:dim] = centred.T
  # Procrustes is optimal for every positive scale of the target; pick the one
  # that gives its columns unit norm on average.
  target *= np.sqrt(num_classes) / np.linalg.norm(target)

  def dist(m):
    return np.linalg.norm(m.astype(np.float64) - target)

  aligned = dist(priors.aligned_etf(means))
  random = [dist(priors.simplex_etf(num_classes, dim, seed=100 + k))
            for k in range(20)]
  assert aligned < min(random)


def test_aligned_etf_ignores_class_mean_offset():
  means = random_class_means(10, 16, seed=0)
  np.testing.assert_allclose(priors.aligned_etf(means),
                             priors.aligned_etf(means + 5.0), atol=1e-5)


def test_aligned_etf_recovers_an_etf():
  """Means that already form a (scaled, shifted) ETF are their own anchors."""
  etf = priors.simplex_etf(10, 16, seed=4)
  np.testing.assert_allclose(priors.aligned_etf(3.0 * etf.T + 1.0), etf,
                             atol=1e-5)


def test_balanced_center_is_unweighted_mean_of_means():
  means = random_class_means(10, 8, seed=0)
  center = priors.balanced_center(means)
  assert center.dtype == np.float32 and center.shape == (8,)
  np.testing.assert_allclose(center, means.mean(axis=0), rtol=1e-6)


@pytest.mark.parametrize("xp", [np, jnp])
def test_pad_features(xp):
  x = xp.ones((2, 3, 4), xp.float32)
  padded = priors.pad_features(x, 6)
  assert isinstance(padded, np.ndarray) == (xp is np)
  assert padded.shape == (2, 3, 6)
  np.testing.assert_array_equal(np.asarray(padded)[..., :4], 1.0)
  np.testing.assert_array_equal(np.asarray(padded)[..., 4:], 0.0)
  assert priors.pad_features(x, 4) is x
  with pytest.raises(ValueError, match="larger than"):
    priors.pad_features(x, 3)


def test_class_mean_anchors_are_the_centred_teacher_directions():
  rng = np.random.default_rng(4)
  means = rng.normal(size=(5, 7)) + 3.0  # an offset the centring must remove
  anchors = priors.class_mean_anchors(means)
  assert anchors.shape == (7, 5) and anchors.dtype == np.float32
  centred = means - means.mean(0)
  expected = (centred / np.linalg.norm(centred, axis=1, keepdims=True)).T
  np.testing.assert_allclose(anchors, expected, rtol=1e-6, atol=1e-7)
  np.testing.assert_allclose(priors.class_mean_anchors(means + 10.0), anchors, atol=1e-6)
  degenerate = np.array([[1.0, 0.0], [-1.0, 0.0], [0.0, 0.0]])  # class 2 is the centre
  with pytest.raises(ValueError, match="no direction"):
    priors.class_mean_anchors(degenerate)
