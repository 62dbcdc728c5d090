"""Every distiller on CIFAR-100-LT, from the raw rows of
results/cifar100_lt_cpu_every_distiller.csv (nothing is trained here).

  python benchmarks/every_distiller_table.py    # prints RESULTS.md's tables, writes the plots

One row per method and setting (DKD's beta and KRDistill's nckd_weight per LRD form were
swept in seed 0's cohort; seeds 1 and 2 ran the settings seed 0's validation chose), mean
± std over seeds of balanced accuracy: validation, test and many / medium / few as
trained, then post-hoc adjusted (argmax(z - tau log pi), tau chosen on validation). Rows
are sorted by the validation accuracy of their validation-chosen form (readme_table's
rule), the settings only seed 0's screen ran (beside other values of their knob) last,
a pick too until its other seeds land; the setting seed 0's validation chose per swept
knob is marked "(val's pick)". Writes results/cifar100_lt_cpu_every_distiller.png: each
row's test balanced accuracy as trained and post-hoc, with the seeds' spread. The rows
from the logit-adjusted teacher (the CE teacher's strongest, re-run) are a second table
and plot (..._la_teacher.png), the teacher-free rows repeated in both for reference.
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

RAW = "cifar100_lt_cpu_every_distiller.csv"
TEACHERS = {"ce": "CE teacher", "logit_adjusted": "logit-adjusted teacher"}
SCREEN_SEED = "0"  # the seed that swept every setting; the others ran validation's picks


def _ms(rows: list[dict], key: str) -> str:
  """Mean ± std; the mean alone for one seed (no spread was measured)."""
  values = [float(r[key]) for r in rows]
  if len(values) == 1:
    return f"{values[0]:.1f}"
  return f"{statistics.mean(values):.1f} ± {statistics.stdev(values):.1f}"


def grouped(teacher: str) -> dict[str, list[dict]]:
  with open(os.path.join(readme_table.RESULTS, RAW)) as f:
    rows = [r for r in csv.DictReader(f)
            if r["teacher_loss"] == teacher or readme_table.teacher_free(r["method"])]
  out: dict[str, list[dict]] = {}
  for row in rows:
    out.setdefault(readme_table.row_name(row), []).append(row)
  return out


def _label(name: str) -> str:
  """A row's title; KRDistill's default says which form it is."""
  return readme_table.title(name) + (" (KL, the default)" if name == "krd" else "")


def _family(name: str) -> str:
  """A row's method with its non-numeric knobs, the rows one numeric sweep compares:
  "krd (lrd_form=target nckd_weight=8.0)" -> "krd lrd_form=target"."""
  method, knobs = readme_table.split_name(name)
  def numeric(value: str) -> bool:
    try:
      float(value)
    except ValueError:
      return False
    return True
  kept = [k for k in knobs.split() if not numeric(k.partition("=")[2])]
  return " ".join([method, *kept])


def sweeps(names) -> list[list[str]]:
  """The knobs swept over numbers (DKD's beta; nckd_weight within one lrd_form): each
  sweep's settings, two or more; a setting with nothing beside it (lrd_form=relation) is
  in none."""
  families: dict[str, list[str]] = {}
  for name in names:
    if readme_table.split_name(name)[1]:
      families.setdefault(_family(name), []).append(name)
  return [settings for settings in families.values() if len(settings) > 1]


def picks(forms: dict[str, dict]) -> set[str]:
  """For each sweep, the setting whose chosen form validates best."""
  return {max(settings, key=lambda n: forms[n]["val"][0]) for settings in sweeps(forms)}


def table(teacher: str = "ce") -> tuple[str, list[tuple[str, dict]]]:
  groups = grouped(teacher)
  all_rows = [r for members in groups.values() for r in members]
  forms = readme_table.forms_of(all_rows, "teacher_loss", teacher)
  # Settings were chosen on the screen seed, and only the picks ran on the other seeds:
  # a pick is what the screen seed's validation chose, and screened-only rows go last.
  screen = [r for r in all_rows if r["seed"] == SCREEN_SEED]
  chosen = picks(readme_table.forms_of(screen, "teacher_loss", teacher))
  swept = {name for settings in sweeps(forms) for name in settings}
  def screened_only(name: str) -> bool:  # a sweep's setting no seed but the screen's ran yet
    return name in swept and {r["seed"] for r in groups[name]} == {SCREEN_SEED}
  order = sorted(forms, key=lambda n: (screened_only(n), -forms[n]["val"][0]))
  lines = ["| row | n | val | test | many | medium | few | post-hoc tau | post-hoc val "
           "| post-hoc test |", "|---|---|---|---|---|---|---|---|---|---|"]
  for name in order:
    rows = groups[name]
    label = _label(name) + (" (val's pick)" if name in chosen else "")
    if forms[name]["post_hoc"]:
      label += " †"
    lines.append(f"| {label} | {len(rows)} | " + " | ".join(
        _ms(rows, k) for k in ("val_balanced", "balanced", "many", "medium", "few",
                               "post_hoc_tau", "post_hoc_val_balanced",
                               "post_hoc_balanced")) + " |")
  lines.append("\n† validation prefers the post-hoc adjusted form.")
  return "\n".join(lines), [(n, groups[n]) for n in order]


def plot(rows: list[tuple[str, list[dict]]], path: str, teacher: str) -> None:
  fig, ax = plt.subplots(figsize=(7, 0.32 * len(rows) + 1.2))
  for offset, key, label in ((-0.18, "balanced", "as trained"),
                             (0.18, "post_hoc_balanced", "post-hoc adjusted")):
    means = [statistics.mean(float(r[key]) for r in g) for _, g in rows]
    stds = [statistics.stdev([float(r[key]) for r in g]) if len(g) > 1 else 0.0
            for _, g in rows]
    ax.barh([i + offset for i in range(len(rows))], means, height=0.36, xerr=stds,
            label=label, capsize=2)
  ax.set_yticks(range(len(rows)), [f"{_label(n)}, n={len(g)}" for n, g in rows], fontsize=7)
  ax.invert_yaxis()
  ax.set_xlabel("balanced test accuracy (%), mean ± std over seeds")
  ax.set_title(f"CIFAR-100-LT, {TEACHERS[teacher]}; rows sorted by validation,\n"
               "a sweep's settings run on the screen seed alone last", fontsize=9)
  ax.legend(fontsize=7, loc="best")
  fig.tight_layout()
  fig.savefig(path, dpi=120)


def main() -> None:
  for teacher, suffix in (("ce", ""), ("logit_adjusted", "_la_teacher")):
    text, rows = table(teacher)
    if all(readme_table.teacher_free(name) for name, _ in rows):  # no run of this teacher
      continue
    print(f"{TEACHERS[teacher]}:\n\n{text}\n")
    path = os.path.join(readme_table.RESULTS, RAW.replace(".csv", f"{suffix}.png"))
    plot(rows, path, teacher)
    print(f"wrote {path}\n")


if __name__ == "__main__":
  main()
