"""Accuracy of model variables on a split: per-class sums on device, summarised on host."""

from __future__ import annotations

from typing import Any, Callable

import jax
import numpy as np
from jax.sharding import Mesh

from krd_jax import calibration
from krd_jax import priors
from krd_jax.data import loader as loader_lib
from krd_jax.train import metrics as metrics_lib
from krd_jax.train import steps as steps_lib

EVAL_BATCH = 500
# The taus post-hoc logit adjustment chooses among on the validation split.
POST_HOC_TAUS = calibration.TAUS


def eval_batch_size(mesh: Mesh) -> int:
  n = mesh.devices.size
  return max(n, EVAL_BATCH // n * n)


def split_sums(eval_step: Callable, variables: Any, ds, split: str,
               mesh: Mesh) -> tuple[np.ndarray, np.ndarray]:
  """(correct, examples) per class of `variables` on `split`, as `eval_step` returns
  them ([C], or [S, C] for a seed-stacked step), summed over the split."""
  correct = total = 0.0
  batches = loader_lib.eval_batches(ds, split, eval_batch_size(mesh), mesh)
  for batch_arrays in batches:
    c, t = eval_step(variables, batch_arrays)
    correct, total = correct + c, total + t  # summed on device, fetched once
  return jax.device_get((correct, total))


def evaluate(eval_step: Callable, variables: Any, ds, split: str, mesh: Mesh) -> dict:
  """Accuracy summary (metrics.summarize) of `variables` on `split` ("test" or "val")."""
  correct, total = split_sums(eval_step, variables, ds, split, mesh)
  return metrics_lib.summarize(correct, total, ds.train_counts)


def has_val(ds) -> bool:
  return ds.val_labels is not None and len(ds.val_labels) > 0


def select_split(ds) -> str:
  """The split that ranks checkpoints: the balanced validation split where there is one."""
  return "val" if has_val(ds) else "test"


def test_and_val(eval_fn: Callable[[str], dict], ds) -> tuple[dict, dict | None]:
  """The final (test, val) summaries of a run; val None without a validation split."""
  return eval_fn("test"), eval_fn("val") if has_val(ds) else None


def post_hoc_step(model, preprocess: Callable, ds, mesh: Mesh,
                  taus: tuple[float, ...] = POST_HOC_TAUS) -> Callable:
  """The jitted evaluation step `post_hoc_adjusted` runs: build it once to adjust many
  models of one architecture (seeds trained together) with one compilation."""
  return steps_lib.jit_eval_step(steps_lib.make_post_hoc_eval_step(
      model, preprocess, ds.num_classes, priors.log_prior(ds.train_counts), taus), mesh)


def post_hoc_adjusted(model, variables: Any, preprocess: Callable, ds, mesh: Mesh,
                      taus: tuple[float, ...] = POST_HOC_TAUS,
                      step: Callable | None = None) -> dict:
  """Post-hoc logit adjustment of a trained model: argmax(z - tau log pi), tau chosen by
  balanced accuracy on the balanced validation split (never the test set).

  Without a validation split tau is 1, the Bayes-optimal correction for a calibrated
  model; `chosen_on` says which.

  Args:
    step: `post_hoc_step(model, preprocess, ds, mesh, taus)`, when the caller built it
      already; by default it is built (and compiled) here.

  Returns:
    {"tau", "chosen_on": "val" | "none (tau = 1)", "test": summary, "val": summary or None}.
  """
  step = step or post_hoc_step(model, preprocess, ds, mesh, taus)

  def per_tau(split: str) -> list[dict]:
    correct, total = split_sums(step, variables, ds, split, mesh)
    return [metrics_lib.summarize(c, total, ds.train_counts) for c in correct]

  if has_val(ds):
    vals = per_tau("val")
    best = calibration.best_tau_index(taus, [v["balanced"] for v in vals])
    chosen_on, val = "val", vals[best]
  else:
    best, chosen_on, val = taus.index(1.0), "none (tau = 1)", None
  return {"tau": float(taus[best]), "chosen_on": chosen_on, "test": per_tau("test")[best],
          "val": val}
