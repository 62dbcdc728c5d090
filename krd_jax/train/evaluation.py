"""Accuracy of model variables on a split: per-class sums on device, summarised on host."""

from __future__ import annotations

from typing import Any, Callable

import jax
import numpy as np
from jax.sharding import Mesh

from krd_jax.data import loader as loader_lib
from krd_jax.train import metrics as metrics_lib

EVAL_BATCH = 500


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
