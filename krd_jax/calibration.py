"""Fitting a teacher's prior correction and temperature on the balanced validation split.

Host-side numpy (float64) on logits already computed: these run once per student run,
before training, to turn a hyper-parameter that would otherwise be tuned by hand (the
rectification strength tau, the teacher's temperature) into a rule the code applies by
itself, chosen on the balanced validation split and never on the test set.

References:
  Menon et al., "Long-tail learning via logit adjustment", ICLR 2021, section 4
  (post-hoc adjustment argmax z - tau log pi, tau tuned on held-out data).
  Guo et al., "On Calibration of Modern Neural Networks", ICML 2017 (temperature
  scaling: one scalar fitted by the validation NLL).
"""

from __future__ import annotations

import numpy as np

# The default grids: tau as evaluation.POST_HOC_TAUS reports it; temperatures
# log-spaced around 1 (a memorised teacher is over-confident: its best s is > 1).
TAUS = tuple(np.round(np.arange(0.0, 2.01, 0.25), 2))
TEMPERATURES = tuple(np.round(np.geomspace(0.25, 16.0, 25), 4))


def _check(logits, labels) -> tuple[np.ndarray, np.ndarray]:
  z = np.asarray(logits, np.float64)
  y = np.asarray(labels)
  if z.ndim != 2 or y.shape != (z.shape[0],) or not len(y):
    raise ValueError(f"logits must be [N, C] and labels [N] with N > 0; got shapes "
                     f"{z.shape} and {y.shape}")
  if not np.issubdtype(y.dtype, np.integer) or y.min() < 0 or y.max() >= z.shape[1]:
    raise ValueError(f"labels must be integers in [0, {z.shape[1]})")
  if not np.all(np.isfinite(z)):
    raise ValueError("logits must be finite")
  return z, y


def balanced_accuracy(predictions: np.ndarray, labels: np.ndarray) -> float:
  """Mean over the classes present in `labels` of each class's accuracy."""
  return float(np.mean([np.mean(predictions[labels == c] == c) for c in np.unique(labels)]))


def post_hoc_tau(logits, labels, log_prior, taus=TAUS) -> tuple[float, list[float]]:
  """The tau of argmax(z - tau log pi) with the best balanced accuracy on (balanced)
  held-out data; ties go to the tau closest to 1 (the Bayes-exact correction).

  Args:
    logits: [N, C] a model's logits on the validation split.
    labels: integer [N].
    log_prior: [C] log of the training prior (`priors.log_prior`).
    taus: candidates.

  Returns:
    (best tau, balanced accuracy of every candidate in order).
  """
  z, y = _check(logits, labels)
  lp = np.asarray(log_prior, np.float64)
  scores = [balanced_accuracy(np.argmax(z - t * lp, -1), y) for t in taus]
  return float(taus[best_tau_index(taus, scores)]), scores


def best_tau_index(taus, scores) -> int:
  """The index of the best score; ties go to the tau closest to 1 (the Bayes-exact
  correction), so a small validation split that cannot tell taus apart keeps it."""
  return max(range(len(taus)), key=lambda i: (scores[i], -abs(taus[i] - 1.0)))


def nll(logits, labels) -> float:
  """Mean negative log-likelihood of softmax(logits) at the labels."""
  z, y = _check(logits, labels)
  z = z - z.max(-1, keepdims=True)
  log_p = z - np.log(np.exp(z).sum(-1, keepdims=True))
  return float(-np.mean(log_p[np.arange(len(y)), y]))


def fit_temperature(logits, labels, log_prior=None, tau: float = 0.0,
                    temperatures=TEMPERATURES) -> tuple[float, list[float]]:
  """Temperature scaling: the s minimising the NLL of softmax(z / s - tau log pi).

  With tau > 0 the temperature calibrates the prior-corrected (balanced) posterior,
  the one a rectified teacher hands on; on a balanced validation split that is the
  posterior to be calibrated.

  Args:
    logits: [N, C] the teacher's logits on the validation split.
    labels: integer [N].
    log_prior: [C] (needed when tau != 0).
    tau: prior correction applied after the scaling.
    temperatures: candidates s > 0.

  Returns:
    (best s, NLL of every candidate in order).
  """
  z, y = _check(logits, labels)
  if any(not s > 0 for s in temperatures):
    raise ValueError(f"temperatures must be > 0; got {temperatures}")
  shift = 0.0 if tau == 0 else tau * np.asarray(log_prior, np.float64)
  losses = [nll(z / s - shift, y) for s in temperatures]
  return float(temperatures[int(np.argmin(losses))]), losses
