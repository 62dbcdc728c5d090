"""Does a ranking at 8 student epochs hold at 16 and 32? KRDistill (LRD as the KL,
decoupled and relation), DKD (the pair's beta and validation's beta 8), DIST and BKD from
the CE teacher, as trained and post-hoc adjusted, against student epochs, from the raw
rows in results/ (nothing is trained here).

  python benchmarks/schedule_question.py    # prints the table and verdicts, writes the plot

Writes results/schedule_question.png (balanced accuracy against student epochs: one
line per row, solid as trained, dashed post-hoc adjusted with tau chosen on validation;
validation on the left, test on the right, mean over seeds with the standard deviation
as error bars), prints each cell's mean ± std and n, and at each data set's longest
schedule holds KRDistill's best form there (on validation) against every other row by
readme_table's rule.
"""

from __future__ import annotations

import csv
import os
import statistics
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import readme_table  # noqa: E402

RESULTS = readme_table.RESULTS
SCREEN = "krd_decoupled_lrd_screen.csv"
RELATION = "krd (lrd_form=relation)"
DECOUPLED = "krd (lrd_form=decoupled nckd_weight=2.0)"
# Row name (readme_table.row_name) -> legend title. "dkd" is the pair's beta (2); beta 8
# and the relation form are the every-distiller table's validation picks (CIFAR-100-LT).
SERIES = {"krd": "KRDistill (KL)", DECOUPLED: "KRDistill (decoupled, nckd 2)",
          RELATION: "KRDistill (relation)", "dkd": "DKD (beta 2)",
          "dkd (beta=8.0)": "DKD (beta 8)", "dist": "DIST", "bkd": "BKD"}
EVERY_DISTILLER_PICKS = (RELATION, "dkd (beta=8.0)", "dist")
# (data set, student epochs, the screen's config for that schedule, {raw file: the rows
# it gives, None for every row of SERIES}): a row comes from one file only, so a method
# that two files hold (the KL default in the every-distiller table) is not counted twice.
SOURCES = [
    ("CIFAR-10-LT", 8, "cifar10_lt:offline,cpu,val",
     {"cifar10_lt_cpu_3seeds.csv": None, "cifar10_lt_cpu_leaders.csv": None}),
    ("CIFAR-10-LT", 16, "cifar10_lt:offline,cpu16,val",
     {"cifar10_lt_cpu16_3seeds.csv": None, "cifar10_lt_cpu16_leaders.csv": None}),
    ("CIFAR-10-LT", 32, "cifar10_lt:offline,cpu32,val", {"cifar10_lt_cpu32_leaders.csv": None}),
    ("CIFAR-100-LT", 8, "cifar100_lt:offline,cpu,val",
     {"cifar100_lt_cpu_dkd_posthoc.csv": None,
      "cifar100_lt_cpu_every_distiller.csv": EVERY_DISTILLER_PICKS}),
    ("CIFAR-100-LT", 16, "cifar100_lt:offline,cpu16,val",
     {"cifar100_lt_cpu16_3seeds.csv": None, "cifar100_lt_cpu16_leaders.csv": None}),
    ("CIFAR-100-LT", 32, "cifar100_lt:offline,cpu32,val",
     {"cifar100_lt_cpu32_leaders.csv": None}),
]
VERDICT_SEEDS = readme_table.VERDICT_SEEDS
COLUMNS = ("val_balanced", "balanced", "post_hoc_val_balanced", "post_hoc_balanced")


def _read(name: str) -> list[dict]:
  path = os.path.join(RESULTS, name)
  if not os.path.exists(path):
    return []
  with open(path) as f:
    return list(csv.DictReader(f))


def _screen_rows(config: str) -> list[dict]:
  """The decoupled-LRD screen's rows of one schedule, their form in `knobs` as
  append_rows writes it (the screen's file has a column per knob instead)."""
  return [{**r, "knobs": f"lrd_form={r['lrd_form']} nckd_weight={r['nckd_weight']}"}
          for r in _read(SCREEN) if r["config"] == config]


def rows(files: dict, screen_config: str) -> dict[str, list[dict]]:
  """Row name -> the CE-teacher rows of one schedule (one per seed), SERIES' rows only."""
  out: dict[str, list[dict]] = {}
  picked = [(r, wanted) for name, wanted in files.items() for r in _read(name)]
  picked += [(r, (DECOUPLED,)) for r in _screen_rows(screen_config)]
  for row, wanted in picked:
    name = readme_table.row_name(row)
    if row["teacher_loss"] == "ce" and name in SERIES and (wanted is None or name in wanted):
      out.setdefault(name, []).append(row)
  return out


def stats(values: list[float]) -> tuple[float, float, int]:
  std = statistics.stdev(values) if len(values) > 1 else float("nan")
  return statistics.mean(values), std, len(values)


def verdicts(schedules: dict) -> list[str]:
  """The issue's question at each data set's longest schedule whose every row has
  VERDICT_SEEDS seeds (a schedule still running, its first seeds committed, is shown but
  not decided on): the KRDistill form with the best validation accuracy there, in its
  validation-chosen form, against every other row's (readme_table.verdict)."""
  lines = []
  for data in sorted({d for d, _ in schedules}):
    epochs = max((e for d, e in schedules if d == data and schedules[d, e] and
                  min(map(len, schedules[d, e].values())) >= VERDICT_SEEDS), default=None)
    if epochs is None:
      continue
    forms = readme_table.forms_of(
        [r for series in schedules[data, epochs].values() for r in series],
        "teacher_loss", "ce")
    best = max((n for n in forms if readme_table.split_name(n)[0] == "krd"),
               key=lambda n: forms[n]["val"][0])
    leader = forms.pop(best)
    for name, form in sorted(forms.items(), key=lambda kv: -kv[1]["val"][0]):
      lines.append(f"- {data}, {epochs} epochs: {_label(best, leader)} against "
                   f"{_label(name, form)}: {readme_table.verdict(leader, form)}")
  return lines


def _label(name: str, form: dict) -> str:
  """A row in its validation-chosen form: "DIST + post-hoc (n=3)"."""
  return f"{SERIES[name]}{' + post-hoc' if form['post_hoc'] else ''} (n={form['n']})"


def plot(table: dict) -> str:
  datasets = sorted({d for d, *_ in SOURCES})
  fig, axes = plt.subplots(len(datasets), 2, figsize=(11, 4 * len(datasets)), squeeze=False)
  colours = {name: f"C{i}" for i, name in enumerate(SERIES)}
  for i, data in enumerate(datasets):
    for j, (split, trained, adjusted) in enumerate(
        (("validation", "val_balanced", "post_hoc_val_balanced"),
         ("test", "balanced", "post_hoc_balanced"))):
      ax = axes[i][j]
      for name, title in SERIES.items():
        for column, style, suffix in ((trained, "-", ""), (adjusted, "--", " + post-hoc")):
          cells = table.get((data, name, column), {})
          if not cells:
            continue
          xs = sorted(cells)
          ax.errorbar(xs, [cells[x][0] for x in xs], yerr=[cells[x][1] for x in xs],
                      fmt=style + "o", color=colours[name], capsize=3, markersize=4,
                      label=title + suffix)
          few = [x for x in xs if cells[x][2] < VERDICT_SEEDS]  # a schedule still running
          ax.plot(few, [cells[x][0] for x in few], "o", color=colours[name],
                  markerfacecolor="white", markersize=7, markeredgewidth=1.5, zorder=3)
      ax.set_xscale("log", base=2)
      ax.set_xticks([8, 16, 32], ["8", "16", "32"])
      ax.set_xlabel("student epochs")
      ax.set_ylabel(f"balanced {split} accuracy (%)")
      ax.set_title(f"{data}: {split}")
      ax.grid(alpha=0.3)
  handles, labels = axes[0][0].get_legend_handles_labels()
  fig.legend(handles, labels, loc="lower center", ncol=4, fontsize=8)
  running = any(n < VERDICT_SEEDS for cells in table.values() for *_, n in cells.values())
  fig.suptitle("CE teacher; mean ± std over seeds (n in the table)" +
               (f"; hollow markers: fewer than {VERDICT_SEEDS} seeds so far" if running else ""),
               fontsize=10)
  fig.tight_layout(rect=(0, 0.1, 1, 0.98))
  path = os.path.join(RESULTS, "schedule_question.png")
  fig.savefig(path, dpi=110)
  return path


def main() -> None:
  table = {}  # (data, row name, column) -> {epochs: (mean, std, n)}
  schedules = {}  # (data, epochs) -> row name -> rows
  for data, epochs, screen_config, files in SOURCES:
    schedules[data, epochs] = rows(files, screen_config)
    for name, series in schedules[data, epochs].items():
      for column in COLUMNS:
        table.setdefault((data, name, column), {})[epochs] = stats(
            [float(r[column]) for r in series])
  print("| data | student | epochs | n | val | test | + post-hoc: val | + post-hoc: test |")
  print("|---|---|---|---|---|---|---|---|")
  for data, epochs, _, _ in SOURCES:
    for name, title in SERIES.items():
      cells = [table.get((data, name, c), {}).get(epochs) for c in COLUMNS]
      if cells[0] is None:
        continue
      shown = [f"{m:.1f}" + (f" ± {s:.1f}" if n > 1 else "") for m, s, n in cells]
      print(f"| {data} | {title} | {epochs} | {cells[0][2]} | " + " | ".join(shown) + " |")
  print("\n".join(["", *verdicts(schedules)]))
  print(f"plot: {plot(table)}")


if __name__ == "__main__":
  main()
