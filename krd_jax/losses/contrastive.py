"""CRD's contrastive (NCE) objective against memory banks of embeddings.

Each training example has a slot in two banks, one of student and one of teacher
embeddings (unit vectors, updated every step with momentum). A student embedding is
scored against the teacher bank's entries of its own example (the positive) and of K
examples of other classes (the negatives), and a teacher embedding against the student
bank's; NCE turns the scores into a binary classification of positives against
noise. These are the pure pieces; `krd_jax.methods.crd` keeps the banks as its state.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from krd_jax.losses import _common

Array = jax.Array
ArrayLike = _common.ArrayLike

__all__ = ["class_sorted_order", "contrast_loss", "contrast_scores", "other_class_indices",
           "update_memory"]


def contrast_scores(embedding: ArrayLike, memory: ArrayLike, contrast_index: ArrayLike,
                    temperature: float = 0.07) -> Array:
  """exp(<memory[k], e> / T) for each example's K + 1 contrast entries.

  Args:
    embedding: [B, D] unit embeddings of one network.
    memory: [N, D] the other network's bank (never differentiated).
    contrast_index: int [B, K + 1]; column 0 the example's own index (the positive).
    temperature: the NCE temperature T.

  Returns:
    float32 [B, K + 1] unnormalised scores (divide by the constant Z, `contrast_loss`).
  """
  e = _common.as_f32(embedding, "embedding", rank=2)
  bank = jax.lax.stop_gradient(_common.as_f32(memory, "memory", rank=2))
  weights = bank[jnp.asarray(contrast_index)]  # [B, K + 1, D]
  return jnp.exp(jnp.einsum("bkd,bd->bk", weights, e) / temperature)


def contrast_loss(scores: ArrayLike, num_data: int, eps: float = 1e-7) -> Array:
  """NCE loss of normalised scores: -log D(positive) - sum log(1 - D(negative)).

  Args:
    scores: [B, K + 1] scores already divided by the normalisation constant Z; column 0
      the positive.
    num_data: N, the noise distribution being uniform over the N examples (Pn = 1 / N).
    eps: the authors' guard in the denominators.

  Returns:
    float32 [B]; the batch mean is the authors' `ContrastLoss`.

  References:
    Tian, Krishnan, Isola 2020, "Contrastive Representation Distillation", ICLR,
    eq. (10)-(18) (the authors' `ContrastLoss`, RepDistiller / mdistiller `CRD.py`).
  """
  x = _common.as_f32(scores, "scores", rank=2)
  noise = (x.shape[1] - 1) / float(num_data)  # K Pn
  log_positive = jnp.log(x[:, 0] / (x[:, 0] + noise + eps))
  log_negative = jnp.log(noise / (x[:, 1:] + noise + eps))
  return -(log_positive + jnp.sum(log_negative, axis=1))


def update_memory(memory: ArrayLike, index: ArrayLike, embedding: ArrayLike,
                  momentum: float = 0.5) -> Array:
  """The bank after this batch: slot i <- normalise(m * slot i + (1 - m) * e_i).

  Args:
    memory: [N, D].
    index: int [B], distinct example indices of the batch.
    embedding: [B, D] this batch's embeddings (taken as constants).
    momentum: m.

  Returns:
    float32 [N, D].
  """
  bank = _common.as_f32(memory, "memory", rank=2)
  index = jnp.asarray(index)
  e = jax.lax.stop_gradient(_common.as_f32(embedding, "embedding", rank=2))
  mixed = momentum * bank[index] + (1.0 - momentum) * e
  return bank.at[index].set(mixed / jnp.linalg.norm(mixed, axis=1, keepdims=True))


def class_sorted_order(train_labels: np.ndarray, num_classes: int
                       ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """(indices sorted by class [N], each class's first position [C], its count [C]): the
  host-side constants `other_class_indices` samples with."""
  labels = np.asarray(train_labels)
  order = np.argsort(labels, kind="stable").astype(np.int32)
  counts = np.bincount(labels, minlength=num_classes)
  starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
  return order, starts.astype(np.int32), counts.astype(np.int32)


def other_class_indices(rng: jax.Array, labels: ArrayLike, order: ArrayLike,
                        starts: ArrayLike, counts: ArrayLike, k: int) -> Array:
  """K negatives per example, drawn uniformly with replacement from the training examples
  of the other classes (the authors' "exact" mode; with replacement where K exceeds that
  pool, which on CIFAR-100-LT (10,847 images, K = 16,384) is always).

  Args:
    rng: a key.
    labels: int [B].
    order, starts, counts: `class_sorted_order` of the training labels.
    k: K.

  Returns:
    int32 [B, K] training-set indices, none of the example's own class.
  """
  labels = jnp.asarray(labels)
  order, starts, counts = (jnp.asarray(a) for a in (order, starts, counts))
  own_start, own_count = starts[labels][:, None], counts[labels][:, None]
  pool = order.shape[0] - own_count
  # Uniform over the other classes' positions in `order`, the own class's block skipped.
  position = jax.random.randint(rng, (labels.shape[0], k), 0, pool)
  position = jnp.where(position < own_start, position, position + own_count)
  return order[position]
