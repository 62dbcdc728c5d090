"""Long-tail classification losses and the balanced batch mean.

Per-example losses take logits [B, C] (any float dtype, computed in float32)
and integer labels [B] and return float32 [B]. Per-class constants (weights,
margins, log prior) come from `krd_jax.priors`. DRW (Cao et al. 2019) is not a
loss but a schedule: pass `priors.effective_number_weights` to `balanced_mean`
from the switch epoch on, ones before it.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax

from krd_jax.losses import _common

Array = jax.Array
ArrayLike = _common.ArrayLike

__all__ = [
    "balanced_mean",
    "balanced_softmax_ce",
    "class_balanced_ce",
    "cross_entropy",
    "ldam_loss",
    "logit_adjusted_ce",
]


def balanced_mean(per_example: ArrayLike, labels: ArrayLike,
                  class_weights: ArrayLike | None = None,
                  where: ArrayLike | None = None) -> Array:
  """Class-weighted batch mean, sum_i w_{y_i} l_i / sum_i w_{y_i}.

  The weights are normalised to average one over the (unmasked) batch, so
  only their ratios matter; with `class_weights=None` this is the plain mean.
  This is the reduction of PyTorch's `cross_entropy(weight=w)` used by
  LDAM-DRW, and the balanced weighting of RRD and LRD.

  Args:
    per_example: [B] losses.
    labels: integer [B].
    class_weights: [C] non-negative weights, or None for uniform.
    where: optional boolean [B]; False entries are left out entirely.

  Returns:
    float32 scalar; 0 when no example is selected (or all weights are zero).

  References:
    docs/method.md, "Averaging and the total" (w_c ~ pi_c^-rho, averaging
    to one over the batch); Cao et al. 2019 (LDAM-DRW), section 3.3.
  """
  loss = _common.as_f32(per_example, "per_example", rank=1)
  labels = _common.check_labels(labels, loss.shape[0])
  w = jnp.ones_like(loss)
  if class_weights is not None:
    w = _common.as_f32(class_weights, "class_weights", rank=1)[labels]
  if where is not None:
    where = jnp.asarray(where)
    if where.shape != loss.shape:
      raise ValueError(f"where has shape {where.shape} but per_example has "
                       f"shape {loss.shape}")
    w = jnp.where(where, w, 0.0)
    # Masked entries may be NaN or inf (padding); keep them out of the sum.
    loss = jnp.where(where, loss, 0.0)
  total = jnp.sum(w)
  return jnp.sum(w * loss) / jnp.where(total > 0, total, 1.0)


def cross_entropy(logits: ArrayLike, labels: ArrayLike) -> Array:
  """Softmax cross-entropy with integer labels, float32 [B].

  Args:
    logits: [B, C].
    labels: integer [B].

  Returns:
    float32 [B].

  References:
    Thin wrapper around `optax.losses.softmax_cross_entropy_with_integer_labels`
    adding the shape checks and the float32 cast.
  """
  logits, labels = _common.logits_and_labels(logits, labels)
  return optax.losses.softmax_cross_entropy_with_integer_labels(logits, labels)


def class_balanced_ce(logits: ArrayLike, labels: ArrayLike,
                      class_weights: ArrayLike) -> Array:
  """Class-balanced softmax CE, w_{y_i} * CE_i, weight applied per example.

  With effective-number weights (normalised to sum C), `jnp.mean` of this is
  the loss of Cui et al. For the weight-normalised reduction instead
  (PyTorch's `cross_entropy(weight=w)`), use
  `balanced_mean(cross_entropy(logits, labels), labels, class_weights)`.

  Args:
    logits: [B, C].
    labels: integer [B].
    class_weights: [C], e.g. `priors.effective_number_weights(counts)`.

  Returns:
    float32 [B].

  References:
    Cui et al. 2019, "Class-Balanced Loss Based on Effective Number of
    Samples", Eq. (4) with the softmax CE of section 4.
  """
  logits, labels = _common.logits_and_labels(logits, labels)
  w = _common.per_class(class_weights, logits.shape[1], "class_weights")
  ce = optax.losses.softmax_cross_entropy_with_integer_labels(logits, labels)
  return w[labels] * ce


def ldam_loss(logits: ArrayLike, labels: ArrayLike, margins: ArrayLike,
              scale: float = 30.0) -> Array:
  """LDAM: CE(s * (z - m_y e_y), y), a per-class margin on the true logit.

  Args:
    logits: [B, C], normally cosine logits (normalised features and weights),
      as LDAM's classifier produces.
    labels: integer [B].
    margins: [C], e.g. `priors.ldam_margins(counts)`.
    scale: s, the logit scale.

  Returns:
    float32 [B].

  References:
    Cao et al. 2019, "Learning Imbalanced Datasets with Label-Distribution-
    Aware Margin Loss", Eq. (13) (the official code's scaled form).
  """
  logits, labels = _common.logits_and_labels(logits, labels)
  m = _common.per_class(margins, logits.shape[1], "margins")
  target = jax.nn.one_hot(labels, logits.shape[1], dtype=jnp.float32)
  shifted = scale * (logits - target * m[labels][:, None])
  return optax.losses.softmax_cross_entropy_with_integer_labels(shifted, labels)


def logit_adjusted_ce(logits: ArrayLike, labels: ArrayLike,
                      log_prior: ArrayLike, tau: float = 1.0) -> Array:
  """Logit-adjusted CE: CE(z + tau * log(pi), y).

  Training with the prior added makes the raw logits z estimate the balanced
  posterior; predict with argmax z.

  Args:
    logits: [B, C].
    labels: integer [B].
    log_prior: [C], `priors.log_prior(counts)`.
    tau: adjustment strength; 1 is Bayes-consistent for the balanced error.

  Returns:
    float32 [B].

  References:
    Menon et al. 2021, "Long-tail learning via logit adjustment", Eq. (10).
  """
  logits, labels = _common.logits_and_labels(logits, labels)
  lp = _common.per_class(log_prior, logits.shape[1], "log_prior")
  return optax.losses.softmax_cross_entropy_with_integer_labels(
      logits + tau * lp, labels)


def balanced_softmax_ce(logits: ArrayLike, labels: ArrayLike,
                        log_prior: ArrayLike) -> Array:
  """Balanced Softmax CE: CE(z + log n, y).

  log n_c and log pi_c differ by a constant per row, which softmax ignores, so
  this equals `logit_adjusted_ce` with tau = 1; either vector may be passed.

  Args:
    logits: [B, C].
    labels: integer [B].
    log_prior: [C], `priors.log_prior(counts)` or log(counts).

  Returns:
    float32 [B].

  References:
    Ren et al. 2020, "Balanced Meta-Softmax for Long-Tailed Visual
    Recognition", Eq. (4) (Balanced Softmax).
  """
  return logit_adjusted_ce(logits, labels, log_prior, tau=1.0)
