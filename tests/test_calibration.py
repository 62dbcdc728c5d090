"""krd_jax.calibration: tau and temperature fitted on held-out logits."""

import numpy as np
import pytest

from krd_jax import calibration
from krd_jax import priors


SHIFT = 1.5  # the true class's mean: x ~ N(SHIFT e_y, I)


def _biased_logits(seed=0, n_per_class=200, num_classes=4, bias=2.0, scale=2.0):
  """Logits of a balanced split from a model whose bias toward head classes is
  bias * log pi (the Bayes-exact correction is tau = bias) and whose confidence is
  `scale` times the true log-likelihood ratio.

  With x ~ N(SHIFT e_y, I), log p(x | y = k) = SHIFT x_k + const, so SHIFT * x is the
  log-likelihood ratio (the balanced posterior's logits) and scale = 1 is calibrated.
  """
  rng = np.random.default_rng(seed)
  counts = np.array([400, 100, 25, 6][:num_classes])
  labels = np.repeat(np.arange(num_classes), n_per_class)
  x = rng.normal(size=(len(labels), num_classes))
  x[np.arange(len(labels)), labels] += SHIFT
  logits = scale * SHIFT * x + bias * priors.log_prior(counts)
  return logits, labels, counts


def test_balanced_accuracy_golden():
  preds = np.array([0, 0, 1, 1, 1, 2])
  labels = np.array([0, 1, 1, 1, 1, 2])
  # class 0: 1/1, class 1: 3/4, class 2: 1/1
  assert calibration.balanced_accuracy(preds, labels) == pytest.approx((1 + 0.75 + 1) / 3)


def test_post_hoc_tau_recovers_the_bias():
  logits, labels, counts = _biased_logits(bias=1.5)
  tau, scores = calibration.post_hoc_tau(logits, labels, priors.log_prior(counts))
  assert len(scores) == len(calibration.TAUS)
  assert tau == pytest.approx(1.5, abs=0.25)
  # The uncorrected model is worse on the balanced split than the corrected one.
  assert max(scores) > scores[0] + 0.05


def test_post_hoc_tau_ties_go_to_one():
  logits = np.array([[2.0, 0.0], [0.0, 2.0]])  # every tau in the grid predicts right
  tau, scores = calibration.post_hoc_tau(logits, [0, 1], np.log([0.5, 0.5]))
  assert len(set(scores)) == 1 and tau == 1.0


def test_nll_golden():
  z = np.array([[1.0, 2.0, 0.5], [0.0, 0.0, 3.0]])
  y = np.array([1, 0])
  p = np.exp(z) / np.exp(z).sum(1, keepdims=True)
  assert calibration.nll(z, y) == pytest.approx(-np.mean(np.log(p[[0, 1], y])), rel=1e-12)


def test_fit_temperature_undoes_over_confidence():
  logits, labels, counts = _biased_logits(bias=0.0, scale=4.0)
  s, losses = calibration.fit_temperature(logits, labels)
  # The logits are 4 x the log-likelihood ratios, so s = 4 calibrates them; the grid's
  # neighbours of 4 are 3.36 and 4.76.
  assert 3.3 < s < 4.8
  assert losses[int(np.argmin(losses))] < calibration.nll(logits, labels)


def test_fit_temperature_calibrates_the_corrected_posterior():
  logits, labels, counts = _biased_logits(bias=2.0, scale=1.0)
  lp = priors.log_prior(counts)
  s_corrected, _ = calibration.fit_temperature(logits, labels, lp, tau=2.0)
  # Once corrected, the logits are the log-likelihood ratios: s = 1 (neighbours 0.84, 1.19).
  assert 0.9 < s_corrected < 1.1
  s_biased, _ = calibration.fit_temperature(logits, labels)
  assert s_biased > 2 * s_corrected  # left in, the head bias is absorbed as over-confidence


@pytest.mark.parametrize("logits, labels, match", [
    (np.zeros((3,)), [0, 0, 0], "logits must be"),
    (np.zeros((3, 2)), [0, 1], "logits must be"),
    (np.zeros((2, 2)), [0, 2], "labels must be integers"),
    (np.full((2, 2), np.nan), [0, 1], "finite"),
])
def test_bad_inputs(logits, labels, match):
  with pytest.raises(ValueError, match=match):
    calibration.post_hoc_tau(logits, labels, np.zeros(2))


def test_fit_temperature_rejects_non_positive_candidates():
  with pytest.raises(ValueError, match="> 0"):
    calibration.fit_temperature(np.zeros((2, 2)), [0, 1], temperatures=(1.0, 0.0))
