"""Accuracy reports for long-tailed evaluation: overall, balanced, per group, per class.

Everything here is host-side numpy on per-class counts that the jitted eval step sums
on device, so a whole test set costs one device-to-host transfer.
"""

from __future__ import annotations

import math
from typing import Mapping, Sequence

import numpy as np

from krd_jax.data import profiles

# Column order of every report table.
GROUP_SPLITS = ("absolute", "tercile")


def summarize(correct_per_class: np.ndarray, total_per_class: np.ndarray,
              train_counts: np.ndarray) -> dict:
  """Accuracy summary of one evaluation.

  Args:
    correct_per_class: [C] number of correctly classified test examples per class.
    total_per_class: [C] number of test examples per class.
    train_counts: [C] training images per class (defines the groups).

  Returns:
    A JSON-ready dict: `overall` (top-1 over examples), `balanced` (mean of per-class
    accuracies), one entry per group of both splits (many / medium / few by absolute
    thresholds, head / middle / tail by frequency terciles; NaN for an empty group),
    `per_class` (list), all in percent. A group's accuracy is the mean of its classes'
    accuracies (docs/method.md, "Long-tailed data conventions").
  """
  correct = np.asarray(correct_per_class, np.float64)
  total = np.asarray(total_per_class, np.float64)
  if np.any(total <= 0):
    missing = np.flatnonzero(total <= 0).tolist()
    raise ValueError(f"evaluation set has no examples of classes {missing}")
  per_class = 100.0 * correct / total
  summary = {
      "overall": float(100.0 * correct.sum() / total.sum()),
      "balanced": float(per_class.mean()),
  }
  for split in GROUP_SPLITS:
    groups = profiles.class_groups(train_counts, split=split)
    for name in profiles.GROUPS[split]:
      members = groups == name
      summary[name] = float(per_class[members].mean()) if members.any() else math.nan
  summary["per_class"] = per_class.tolist()
  return summary


def format_table(rows: Mapping[str, Mapping[str, float]],
                 columns: Sequence[str] = ("overall", "balanced", "many", "medium", "few",
                                           "head", "middle", "tail"),
                 decimals: Mapping[str, int] | None = None) -> str:
  """A Markdown table, one row per run, accuracy columns in percent.

  Values may be floats or (mean, std) pairs; NaN prints as an em dash (empty group),
  a NaN std (one seed) as the mean alone. `decimals` (column -> digits, default 1)
  for columns that are not percentages.
  """
  def cell(value, digits: int) -> str:
    if isinstance(value, (tuple, list)):
      mean, std = value
      if math.isnan(mean):
        return "—"
      return (f"{mean:.{digits}f}" if math.isnan(std)
              else f"{mean:.{digits}f} ± {std:.{digits}f}")
    return "—" if value is None or math.isnan(value) else f"{value:.{digits}f}"

  digits = {c: (decimals or {}).get(c, 1) for c in columns}
  header = "| run | " + " | ".join(columns) + " |"
  rule = "|---|" + "---|" * len(columns)
  body = [f"| {name} | " + " | ".join(cell(row.get(c), digits[c]) for c in columns) + " |"
          for name, row in rows.items()]
  return "\n".join([header, rule, *body])


def merge_identical(results: Mapping[str, Sequence[float]]) -> dict[str, np.ndarray]:
  """Runs with the same per-class accuracy as one line named "A = B", or "A (= rest)"
  where B is A + rest (a post-hoc row at tau 0 is its run: drawn twice, one line would
  hide the other), in first-seen order."""
  merged: dict[str, np.ndarray] = {}
  for name, accuracy in results.items():
    accuracy = np.asarray(accuracy, dtype=float)
    same = next((k for k, v in merged.items() if np.array_equal(v, accuracy)), None)
    if same is None:
      merged[name] = accuracy
    elif name.startswith(same):
      merged[f"{same} (= {name[len(same):].lstrip(' +')})"] = merged.pop(same)
    else:
      merged[f"{same} = {name}"] = merged.pop(same)
  return merged


def save_with_legend_beside(fig, ax, path: str) -> str:
  """Writes `fig` to `path` (PNG) with the legend beside the axes, not over the
  curves; the saved figure grows to hold it."""
  import matplotlib.pyplot as plt
  ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
  fig.savefig(path, dpi=120, bbox_inches="tight")
  plt.close(fig)
  return path


def plot_per_class(results: Mapping[str, Sequence[float]], train_counts: np.ndarray,
                   path: str, title: str = "") -> str:
  """Saves a PNG of per-class accuracy against training count (log x), one line per run
  (runs with identical per-class accuracy share one, `merge_identical`).

  Args:
    results: run name -> per-class accuracy in percent.
    train_counts: [C] training images per class.
    path: where to write the PNG.
    title: figure title.

  Returns:
    The path written.
  """
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt

  counts = np.asarray(train_counts)
  order = np.argsort(-counts, kind="stable")
  fig, ax = plt.subplots(figsize=(7, 4.2))
  for name, accuracy in merge_identical(results).items():
    # The teacher is the reference the students are read against: draw it apart, in
    # black (its post-hoc adjusted row dotted).
    style = {"lw": 1.2}
    if name.startswith("teacher"):
      first = name.split(" (= ")[0].split(" = ")[0]  # the first of merged runs
      style = {"color": "black", "ls": ":" if "post-hoc" in first else "--", "lw": 2.0,
               "zorder": 3}
    ax.plot(counts[order], np.asarray(accuracy)[order], marker="o", ms=3, label=name,
            **style)
  ax.set_xscale("log")
  ax.set_xlabel("training images of the class (log scale)")
  ax.set_ylabel("test accuracy of the class (%)")
  ax.set_ylim(-2, 102)
  ax.grid(alpha=0.3, which="both")
  if title:
    ax.set_title(title)
  return save_with_legend_beside(fig, ax, path)
