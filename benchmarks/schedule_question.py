"""Does a ranking at 8 student epochs hold at 16 and 32? KRDistill (LRD as the KL and
decoupled), DKD and BKD from the CE teacher, as trained and post-hoc adjusted, against
student epochs, from the raw rows in results/ (nothing is trained here).

  python benchmarks/schedule_question.py    # prints the table, writes the plot

Writes results/schedule_question.png (balanced accuracy against student epochs: one
line per method, solid as trained, dashed post-hoc adjusted with tau chosen on
validation; validation on the left, test on the right, mean over seeds with the
standard deviation as error bars) and prints each cell's mean ± std and n.
"""

from __future__ import annotations

import csv
import os
import statistics

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")
SCREEN = "krd_decoupled_lrd_screen.csv"
# (data set, student epochs, raw file, the screen's config value for that schedule).
SOURCES = [
    ("CIFAR-10-LT", 8, "cifar10_lt_cpu_3seeds.csv", "cifar10_lt:offline,cpu,val"),
    ("CIFAR-10-LT", 16, "cifar10_lt_cpu16_3seeds.csv", "cifar10_lt:offline,cpu16,val"),
    ("CIFAR-10-LT", 32, "cifar10_lt_cpu32_3seeds.csv", "cifar10_lt:offline,cpu32,val"),
    ("CIFAR-100-LT", 8, "cifar100_lt_cpu_dkd_posthoc.csv", "cifar100_lt:offline,cpu,val"),
    ("CIFAR-100-LT", 16, "cifar100_lt_cpu16_3seeds.csv", "cifar100_lt:offline,cpu16,val"),
]
METHODS = {"krd": "KRDistill (KL)", "krd_decoupled": "KRDistill (decoupled, nckd 2)",
           "dkd": "DKD", "bkd": "BKD"}


def _read(name: str) -> list[dict]:
  path = os.path.join(RESULTS, name)
  if not os.path.exists(path):
    return []
  with open(path) as f:
    return list(csv.DictReader(f))


def rows(data: str, epochs: int, name: str, screen_config: str) -> dict[str, list[dict]]:
  """method -> the CE-teacher rows of one schedule (one per seed)."""
  out: dict[str, list[dict]] = {}
  for row in _read(name):
    if row["teacher_loss"] == "ce" and row["method"] in ("krd", "dkd", "bkd") and (
        row.get("lrd_form", "kl") in ("", "kl")):
      out.setdefault(row["method"], []).append(row)
  decoupled = [r for r in _read(SCREEN) if r["config"] == screen_config and
               r["lrd_form"] == "decoupled" and r["teacher_loss"] == "ce"]
  if decoupled:
    out["krd_decoupled"] = decoupled
  return out


def stats(values: list[float]) -> tuple[float, float, int]:
  std = statistics.stdev(values) if len(values) > 1 else float("nan")
  return statistics.mean(values), std, len(values)


def main() -> None:
  table = {}  # (data, method, column) -> {epochs: (mean, std, n)}
  for data, epochs, name, screen_config in SOURCES:
    for method, method_rows in rows(data, epochs, name, screen_config).items():
      for column in ("val_balanced", "balanced", "post_hoc_val_balanced",
                     "post_hoc_balanced"):
        table.setdefault((data, method, column), {})[epochs] = stats(
            [float(r[column]) for r in method_rows])
  print("| data | student | epochs | n | val | test | + post-hoc: val | + post-hoc: test |")
  print("|---|---|---|---|---|---|---|---|")
  for data, epochs, _, _ in SOURCES:
    for method, title in METHODS.items():
      cells = [table.get((data, method, c), {}).get(epochs) for c in
               ("val_balanced", "balanced", "post_hoc_val_balanced", "post_hoc_balanced")]
      if cells[0] is None:
        continue
      shown = [f"{m:.1f}" + (f" ± {s:.1f}" if n > 1 else "") for m, s, n in cells]
      print(f"| {data} | {title} | {epochs} | {cells[0][2]} | " + " | ".join(shown) + " |")
  datasets = sorted({d for d, *_ in SOURCES})
  fig, axes = plt.subplots(len(datasets), 2, figsize=(11, 4 * len(datasets)), squeeze=False)
  colours = dict(zip(METHODS, ("C0", "C1", "C3", "C2")))
  for i, data in enumerate(datasets):
    for j, (split, trained, adjusted) in enumerate(
        (("validation", "val_balanced", "post_hoc_val_balanced"),
         ("test", "balanced", "post_hoc_balanced"))):
      ax = axes[i][j]
      for method, title in METHODS.items():
        for column, style, suffix in ((trained, "-", ""), (adjusted, "--", " + post-hoc")):
          cells = table.get((data, method, column), {})
          if not cells:
            continue
          xs = sorted(cells)
          ax.errorbar(xs, [cells[x][0] for x in xs], yerr=[cells[x][1] for x in xs],
                      fmt=style + "o", color=colours[method], capsize=3, markersize=4,
                      label=title + suffix)
      ax.set_xscale("log", base=2)
      ax.set_xticks([8, 16, 32], ["8", "16", "32"])
      ax.set_xlabel("student epochs (CE teacher; mean ± std over seeds, n in the table)")
      ax.set_ylabel(f"balanced {split} accuracy (%)")
      ax.set_title(f"{data}: {split}")
      ax.grid(alpha=0.3)
  handles, labels = axes[0][0].get_legend_handles_labels()
  fig.legend(handles, labels, loc="lower center", ncol=4, fontsize=8)
  fig.tight_layout(rect=(0, 0.07, 1, 1))
  path = os.path.join(RESULTS, "schedule_question.png")
  fig.savefig(path, dpi=110)
  print(f"plot: {path}")


if __name__ == "__main__":
  main()
