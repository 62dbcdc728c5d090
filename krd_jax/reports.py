"""Tables, CSVs and plots of runs and sweeps: one home for what the demo and the ablation
runner report.

Row names (`teacher_row_name`, `student_row_name`, `post_hoc_row`), the demo's report,
and a sweep's per-run rows, seed aggregates, summary markdown and plots. A sweep's runs
are read by attribute (`krd_jax.ablate.planning.Run`: cell, overrides, method, seed,
run_dir, teacher_dir), so nothing here depends on how they were planned.
"""

from __future__ import annotations

import csv
import math
import os
from typing import Any, Callable, Sequence

import ml_collections
import numpy as np

from krd_jax import losses
from krd_jax import methods
from krd_jax.train import checkpoints as ckpt_lib
from krd_jax.train import metrics as metrics_lib

# Accuracy columns of every table, in the order of metrics.format_table.
METRICS = ("overall", "balanced", "many", "medium", "few", "head", "middle", "tail")
# Columns that choose defaults (balanced validation split) and the post-hoc bar: the
# run's balanced val accuracy, and its post-hoc logit adjustment (tau chosen on val).
SELECTION = ("val_balanced", "post_hoc_tau", "post_hoc_val_balanced", "post_hoc_balanced")


# ----------------------------------------------------------------------------- row names


def teacher_row_name(cfg: ml_collections.ConfigDict) -> str:
  """'teacher resnet32 (LDAM-DRW)': a table row's name for the configured teacher."""
  title = losses.teacher_title(cfg.teacher.loss, cfg.teacher.drw_epoch)
  return f"teacher {cfg.teacher.model} ({title})"


def student_row_name(cfg: ml_collections.ConfigDict, method: str) -> str:
  """'student resnet8 KRDistill (krd)': a table row's name for a student of `method`."""
  return f"student {cfg.student.model} {methods.display_name(method)}"


def post_hoc_row(name: str, post_hoc: dict) -> dict:
  """{table row name: test summary} of a post-hoc logit adjustment result."""
  chosen = "on val" if post_hoc["chosen_on"] == "val" else "no val split"
  return {f"{name} + post-hoc LA (tau {post_hoc['tau']:g}, {chosen})": post_hoc["test"]}


# ----------------------------------------------------------------------------- the demo


def demo_report(rows: dict[str, dict], ds, devices: int, seconds: float) -> str:
  """report.md of a demo: what was measured, then its table."""
  groups = ", ".join(f"{split}: {'/'.join(metrics_lib.profiles.GROUPS[split])}"
                     for split in metrics_lib.GROUP_SPLITS)
  return (f"# {ds.name} demo\n\nTest accuracy (%), {len(ds.test_labels)} balanced test "
          f"images, {len(ds.train_labels)} long-tailed training images, "
          f"{devices} device(s), {seconds:.0f} s.\nGroups: {groups} "
          "(absolute: >100 / 20-100 / <20 training images; tercile: classes ranked by "
          "count).\n\n" + metrics_lib.format_table(rows) + "\n")


def plot_demo(rows: dict[str, dict], ds, path: str) -> str:
  """The demo's per-class accuracy of every row against the class's training count."""
  return metrics_lib.plot_per_class(
      {name: row["per_class"] for name, row in rows.items()}, ds.train_counts, path,
      title=f"{ds.name}: per-class test accuracy against training count")


# ----------------------------------------------------------------------------- sweeps


def short_names(keys: Sequence[str]) -> dict[str, str]:
  """Shortest dotted suffix of each key that no other key shares (for labels)."""
  out = {}
  for key in keys:
    parts = key.split(".")
    for n in range(1, len(parts) + 1):
      suffix = ".".join(parts[-n:])
      if not any(k != key and (k == suffix or k.endswith("." + suffix)) for k in keys):
        break
    out[key] = suffix
  return out


def _fmt(value: Any) -> str:
  return str(value).lower() if isinstance(value, bool) else str(value)


def result_rows(runs_: Sequence[Any], outcomes: list[tuple[str, dict | None]],
                keys: Sequence[str], overrides: Sequence[tuple[str, Any]] = ()) -> list[dict]:
  """One flat row per run: cell, the command line's overrides and the swept values (a
  column each, so that a row read alone says what it ran), method, seed, status,
  accuracies."""
  fixed = {k: _fmt(v) for k, v in overrides if k not in keys}
  rows = []
  for run, (status, final) in zip(runs_, outcomes):
    row = {"cell": run.cell, **fixed, **{k: _fmt(run.overrides[k]) for k in keys},
           "method": run.method, "seed": run.seed, "status": status,
           "run_dir": run.run_dir, "teacher_dir": run.teacher_dir or ""}
    row.update({m: (final or {}).get("test", {}).get(m, math.nan) for m in METRICS})
    row.update(_selection_columns(final))
    rows.append(row)
  return rows


def _selection_columns(final: dict | None) -> dict:
  """SELECTION values of a final record; NaN where it has none (no validation split, or
  a run from before post-hoc adjustment was recorded)."""
  final = final or {}
  post_hoc = final.get("post_hoc") or {}
  return {"val_balanced": (final.get("val") or {}).get("balanced", math.nan),
          "post_hoc_tau": post_hoc.get("tau", math.nan),
          "post_hoc_val_balanced": (post_hoc.get("val") or {}).get("balanced", math.nan),
          "post_hoc_balanced": post_hoc.get("test", {}).get("balanced", math.nan)}


def aggregate(rows: list[dict], keys: Sequence[str]) -> list[dict]:
  """Mean and sample std (ddof=1; NaN for one seed: no spread was measured) over the
  finished seeds of each cell x method, in sweep order. Diverged runs are counted in
  `diverged`, not averaged."""
  groups: dict[tuple, list[dict]] = {}
  for row in rows:
    groups.setdefault((row["cell"], row["method"]), []).append(row)
  out = []
  for (cell, method), members in groups.items():
    done = [r for r in members if r["status"] != "diverged"]
    entry = {"cell": cell, **{k: members[0][k] for k in keys}, "method": method,
             "seeds": len(done), "diverged": len(members) - len(done)}
    for m in (*METRICS, *SELECTION):
      values = np.array([r.get(m, math.nan) for r in done], np.float64)
      entry[m] = float(values.mean()) if len(values) else math.nan
      entry[f"{m}_std"] = float(values.std(ddof=1)) if len(values) > 1 else math.nan
    out.append(entry)
  return out


def write_csv(path: str, rows: list[dict]) -> None:
  with open(path, "w", newline="") as f:
    writer = csv.DictWriter(f, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)


def _affects(key: str, method: str) -> bool:
  """Whether swept `key` can change a `method` run (methods.X.* only affect X)."""
  return not key.startswith("methods.") or key.startswith(f"methods.{method}.")


def _label(entry: dict, keys: Sequence[str], short: dict[str, str]) -> str:
  """The method and the swept values that act on it: DIST in a grid over KRDistill's
  lrd_form is "DIST", not "DIST lrd_form=relation" (one run, reported in every cell)."""
  swept = " ".join(f"{short[k]}={entry[k]}" for k in keys if _affects(k, entry["method"]))
  label = f"{methods.display_name(entry['method'])} {swept}".strip()
  return label + (f" ({entry['diverged']} diverged)" if entry["diverged"] else "")


def summary_markdown(summary: list[dict], keys: Sequence[str], grid: Sequence[tuple[str, list]],
                     seeds: Sequence[int], teachers: dict[str, dict],
                     overrides: Sequence[tuple[str, Any]] = ()) -> str:
  """summary.md: the grid and the base config's overrides (a row's name does not show
  them), then one table row per cell x method (mean ± std)."""
  short = short_names(keys)
  table_rows, selection = {}, {}
  for e in summary:
    label = _label(e, keys, short)  # a run that several cells share: one label, one row
    table_rows[label] = {m: (e[m], e[f"{m}_std"]) for m in METRICS}
    selection[label] = {c: (e[c], e[f"{c}_std"]) for c in SELECTION}
  axes = "\n".join(f"- `{k}`: {', '.join(_fmt(v) for v in values)}" for k, values in grid)
  text = (f"# Ablation\n\nTest accuracy (%), mean ± std over seeds "
          f"{', '.join(map(str, seeds))} (sample std; groups as in metrics.summarize).\n\n"
          f"Grid:\n{axes or '- (none: the base config only)'}\n\n")
  if overrides:
    text += ("Base config overridden for every run: " +
             ", ".join(f"`{k}={_fmt(v)}`" for k, v in overrides) + "\n\n")
  text += f"{metrics_lib.format_table(table_rows)}\n"
  if any(not math.isnan(row["val_balanced"][0]) for row in selection.values()):
    text += ("\nChoose on these: balanced accuracy (%) on the balanced validation split, "
             "and post-hoc logit adjustment of each student (argmax z - tau log pi, tau "
             "chosen on val; its test accuracy is the post-hoc bar):\n\n" +
             metrics_lib.format_table(selection, SELECTION, decimals={"post_hoc_tau": 2})
             + "\n")
  if teachers:
    text += ("\nTeachers (test accuracy, %):\n\n" +
             metrics_lib.format_table(teachers) + "\n")
  return text


def plot_balanced(summary: list[dict], keys: Sequence[str], path: str) -> str:
  """Balanced accuracy against the first swept key, error bars = std over seeds.

  One line per method, and per combination of the other swept keys' values that
  affect that method (those are not averaged away: each is a different experiment;
  a kd line is not repeated for every value of methods.krd.swap).
  """
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt

  first, rest = keys[0], list(keys[1:])
  short = short_names(keys)
  xs = list(dict.fromkeys(e[first] for e in summary))  # sweep order
  try:
    positions = {x: float(x) for x in xs}
    ticks = None
  except ValueError:  # bool or str values: evenly spaced categories
    positions = {x: float(i) for i, x in enumerate(xs)}
    ticks = xs
  lines: dict[tuple, dict[str, dict]] = {}
  for e in summary:
    others = tuple((k, e[k]) for k in rest if _affects(k, e["method"]))
    lines.setdefault((e["method"], others), {}).setdefault(e[first], e)
  method_order = list(dict.fromkeys(e["method"] for e in summary))
  styles = ["-", "--", ":", "-."]
  drawn = {m: 0 for m in method_order}  # lines per method so far: picks the line style
  fig, ax = plt.subplots(figsize=(7, 4.2))
  for (method, others), points in lines.items():
    label = " ".join([methods.display_name(method)] + [f"{short[k]}={v}" for k, v in others])
    entries = list(points.values())
    ax.errorbar([positions[e[first]] for e in entries], [e["balanced"] for e in entries],
                yerr=[np.nan_to_num(e["balanced_std"]) for e in entries],
                color=f"C{method_order.index(method) % 10}",
                ls=styles[drawn[method] % len(styles)], marker="o", ms=4, capsize=3,
                label=label)
    drawn[method] += 1
  if ticks is not None:
    ax.set_xticks(range(len(ticks)), ticks)
  ax.set_xlabel(first)
  ax.set_ylabel("balanced test accuracy (%)")
  ax.grid(alpha=0.3)
  return metrics_lib.save_with_legend_beside(fig, ax, path)


def plot_per_class_means(runs_: Sequence[Any], outcomes: list[tuple[str, dict | None]],
                         teachers: dict[str, dict], train_counts: np.ndarray,
                         path: str) -> str:
  """per_class.png of a one-cell sweep: each method's seed-mean test accuracy per class
  (diverged runs left out) and each teacher's (`teachers`: teacher_rows), against the
  class's training count."""
  per_method: dict[str, list] = {}
  for run, (status, final) in zip(runs_, outcomes):
    if status != "diverged" and final:
      per_method.setdefault(run.method, []).append(final["test"]["per_class"])
  lines = {f"teacher {name}": test["per_class"]
           for name, test in teachers.items()}
  lines.update({f"{methods.display_name(m)} ({len(v)} seed{'s' * (len(v) > 1)})":
                np.mean(v, axis=0) for m, v in per_method.items()})
  return metrics_lib.plot_per_class(lines, train_counts, path,
                                    title="test accuracy per class (seed means)")


def teacher_rows(runs_: Sequence[Any]) -> dict[str, dict]:
  rows = {}
  for d in dict.fromkeys(r.teacher_dir for r in runs_ if r.teacher_dir):
    meta = ckpt_lib.read_teacher_meta(d)
    if meta is not None:
      rows[f"{meta['model']} ({os.path.basename(os.path.normpath(d))})"] = meta["test"]
  return rows




def write_sweep_reports(out: str, runs_: Sequence[Any], outcomes: Sequence[tuple],
                        grid: Sequence[tuple[str, list]], seeds: Sequence[int],
                        train_counts: Callable[[], np.ndarray],
                        overrides: Sequence[tuple[str, Any]] = ()) -> dict:
  """A sweep's results.csv, summary.csv, summary.md and plot, written under `out`.

  Args:
    out: the reports folder (it exists).
    runs_, outcomes: the sweep's runs and each one's (status, final record).
    grid: the swept axes; seeds: the student seeds.
    train_counts: () -> training images per class (read only for the one-cell plot).
    overrides: (key, value) of the base config set on the command line, named in
      summary.md and a column each of results.csv.

  Returns:
    {"rows", "summary", "table", "files": {name: path}}.
  """
  keys = [k for k, _ in grid]
  rows = result_rows(runs_, outcomes, keys, overrides)
  summary = aggregate(rows, keys)
  teachers = teacher_rows(runs_)
  table = summary_markdown(summary, keys, grid, seeds, teachers, overrides)
  files = {name: os.path.join(out, name)
           for name in ("results.csv", "summary.csv", "summary.md")}
  write_csv(files["results.csv"], rows)
  write_csv(files["summary.csv"], summary)
  with open(files["summary.md"], "w") as f:
    f.write(table)
  if keys:
    files["plot"] = plot_balanced(
        summary, keys, os.path.join(out, f"balanced_vs_{keys[0].replace('.', '_')}.png"))
  else:  # one cell: each method's per-class accuracy against its class's training count
    files["per_class_plot"] = plot_per_class_means(
        runs_, outcomes, teachers, train_counts(), os.path.join(out, "per_class.png"))
  return {"rows": rows, "summary": summary, "table": table, "files": files}
