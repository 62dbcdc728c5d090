"""Ablation sweeps: a grid of config overrides x student methods x seeds.

  python -m krd_jax.ablate --config=digits_lt \
      --grid "methods.krd.beta=0.5,1,2 methods.krd.swap=true,false data.imbalance=10,50" \
      --methods krd,kd --seeds 3 --workdir runs/ablate_beta

The grid is the cartesian product of its axes ("key=v1,v2,..." separated by spaces);
each value is typed by the base config's field (bool: true/false, int, float, str),
and a misspelt key, a badly typed value or a method knob that would not act in some run
(methods.krd.lam while use_rrd is off: each knob declares when it acts) is an error
before anything is trained or written. Any field of the base config can also be overridden as usual
(--config.student.epochs=50).

Every cell x method x seed is one student run. Teachers are trained once per distinct
(data, teacher) configuration, with the base config's seed, and shared by every
student of that configuration; seeds vary the students. Runs whose effective
configuration is identical (e.g. the kd student of two cells that differ only in
methods.krd.beta) are trained once and reported in each cell. Running the same command
again skips finished runs and resumes an interrupted one from its last checkpoint.

--parallel-seeds N trains up to N seeds of a cell x method as one vmapped program
(krd_jax.train.seeds: each seed keeps its own initialisation, data order and
augmentation; results equal the seeds trained in turn to float32 rounding), so small
models use an accelerator far better. Convolutional students on CPU still run their
seeds in turn, which is faster there. See benchmarks/RESULTS.md.

Layout of the workdir:
  teachers/<key>/                      one teacher per (data, teacher) configuration
  students/<method>_s<seed>_<key>/     one student run (config.json, final.json, ...)
  parallel/<method>_s<seeds>_<key>/    a group of seeds trained together (checkpoints)
and of the output folder (--out, default the workdir):
  results.csv              one row per cell x method x seed
  summary.md, summary.csv  mean ± std over seeds per cell x method
  balanced_vs_<key>.png    balanced accuracy against the first swept key, per method
  per_class.png            without --grid: per-class accuracy of each method (seed
                           means) and of the teacher, against training count

Expected runtime: the example above (12 cells x 2 methods x 3 seeds: 42 distinct
student runs and 2 teachers) about 7 minutes on 2 CPU cores.
"""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import itertools
import json
import math
import os
import re
import sys
from typing import Any, Sequence

import ml_collections
import numpy as np
from tqdm.auto import tqdm

from krd_jax import config as config_lib
from krd_jax import configs
from krd_jax import methods
from krd_jax import validate

# Accuracy columns of every table, in the order of metrics.format_table.
METRICS = ("overall", "balanced", "many", "medium", "few", "head", "middle", "tail")
# Columns that choose defaults (balanced validation split) and the post-hoc bar: the
# run's balanced val accuracy, and its post-hoc logit adjustment (tau chosen on val).
SELECTION = ("val_balanced", "post_hoc_tau", "post_hoc_val_balanced", "post_hoc_balanced")
# Swept through their own flags (--seeds, --methods, --workdir), never through the grid.
_RESERVED_KEYS = {"seed": "--seeds", "student.method": "--methods",
                  "workdir": "--workdir", "teacher.checkpoint": "--config.teacher.checkpoint"}
_TRUE, _FALSE = ("true", "1", "yes"), ("false", "0", "no")

Grid = list[tuple[str, list[Any]]]


# ----------------------------------------------------------------------------- the grid


def _field(cfg: ml_collections.ConfigDict, key: str) -> Any:
  """The current value of dotted `key`, or a ValueError naming the valid keys there."""
  try:
    return config_lib.lookup(cfg, key)
  except ValueError as error:
    raise ValueError(f"grid key {key!r}: {error}") from None


def _typed(text: str, current: Any, key: str) -> Any:
  """`text` converted to the type of the field's current value."""
  try:
    if isinstance(current, bool):  # before int: bool is an int
      if text.lower() not in _TRUE + _FALSE:
        raise ValueError
      return text.lower() in _TRUE
    if isinstance(current, int):
      return int(text)
    if isinstance(current, float):
      return float(text)
  except ValueError:
    raise ValueError(f"grid key {key!r}: {text!r} is not of type {type(current).__name__} "
                     f"(the field's current value is {current!r})") from None
  if isinstance(current, str):
    return text
  if isinstance(current, ml_collections.ConfigDict):
    raise ValueError(f"grid key {key!r} is a section; sweep one of its fields: "
                     f"{', '.join(sorted(current.keys()))}")
  raise ValueError(f"grid key {key!r}: fields of type {type(current).__name__} cannot "
                   "be swept (only bool, int, float and str)")


def parse_grid(spec: str, base: ml_collections.ConfigDict) -> Grid:
  """'a.b=1,2 c=x,y' -> [('a.b', [1, 2]), ('c', ['x', 'y'])], typed by `base`.

  Raises:
    ValueError: malformed axis, repeated or reserved key, unknown key (the message
      lists the valid keys at that level) or a value of the wrong type.
  """
  grid: Grid = []
  for axis in spec.split():
    key, sep, values = axis.partition("=")
    if not sep or not key or not values:
      raise ValueError(f"grid axis {axis!r} is not of the form key=value1,value2,...")
    if key in _RESERVED_KEYS:
      raise ValueError(f"{key!r} cannot be swept in the grid; use {_RESERVED_KEYS[key]}")
    if key in dict(grid):
      raise ValueError(f"grid key {key!r} appears twice")
    current = _field(base, key)
    typed = [_typed(v, current, key) for v in values.split(",") if v]
    if len(set(typed)) != len(typed):
      raise ValueError(f"grid key {key!r} repeats a value: {values}")
    grid.append((key, typed))
  return grid


def cells(grid: Grid) -> list[dict[str, Any]]:
  """The cartesian product of the axes, first axis slowest; one empty cell if none."""
  keys = [k for k, _ in grid]
  return [dict(zip(keys, combo)) for combo in itertools.product(*(v for _, v in grid))]


def _set(cfg: ml_collections.ConfigDict, key: str, value: Any) -> None:
  *parents, leaf = key.split(".")
  node = cfg
  for part in parents:
    node = node[part]
  node[leaf] = value  # a locked ConfigDict checks the type here


# ----------------------------------------------------------------------------- runs


def _digest(obj: Any) -> str:
  text = json.dumps(obj, sort_keys=True, default=str)
  return hashlib.sha256(text.encode()).hexdigest()[:10]


def _as_dict(cfg: ml_collections.ConfigDict) -> dict:
  return json.loads(cfg.to_json_best_effort())


def teacher_key(cfg: ml_collections.ConfigDict, teacher_seed: int) -> str:
  """Names the teacher a run needs: everything that shapes the teacher's training."""
  if cfg.teacher.checkpoint:
    return _digest({"checkpoint": os.path.abspath(cfg.teacher.checkpoint)})
  d = _as_dict(cfg)
  return _digest({"data": d["data"], "teacher": d["teacher"], "seed": teacher_seed,
                  "compute_dtype": d["compute_dtype"], "num_devices": d["num_devices"]})


def needs_teacher(cfg: ml_collections.ConfigDict) -> bool:
  return validate.needs_teacher(cfg, cfg.student.method)


def run_key(cfg: ml_collections.ConfigDict, teacher_seed: int) -> str:
  """Names a student run by what shapes its result, so identical runs are shared.

  Only the run's own method's hyperparameters count (a kd student does not change
  with methods.krd.lam), and the teacher counts by its key, not by path.
  """
  d = _as_dict(cfg)
  for name in ("workdir", "progress", "demo_methods", "methods", "teacher", "distributed"):
    d.pop(name)
  d["method_kwargs"] = cfg.methods[cfg.student.method].to_dict()
  d["teacher_key"] = teacher_key(cfg, teacher_seed) if needs_teacher(cfg) else None
  return _digest(d)


@dataclasses.dataclass
class Run:
  """One student run of the sweep: a cell, a method, a seed."""
  cell: int
  overrides: dict[str, Any]
  method: str
  seed: int
  cfg: ml_collections.ConfigDict
  run_dir: str
  teacher_dir: str | None


def _preflight(cfg: ml_collections.ConfigDict) -> None:
  """The run's method checks its hyper-parameters now, so a bad value (say
  methods.krd.lam=2) fails before hours of earlier cells, not after."""
  methods.get(cfg.student.method).check(cfg.methods[cfg.student.method].to_dict())


def _check_axes_reach_methods(grid: Grid, methods: Sequence[str]) -> None:
  """A methods.X.* axis with no X among the swept methods would train identical runs."""
  for key, _ in grid:
    section = key.split(".")[1] if key.startswith("methods.") else None
    if section is not None and section not in methods:
      raise ValueError(f"grid key {key!r} has no effect: no {section} run is in the sweep "
                       f"(--methods {','.join(methods)}); add {section} to --methods")


def plan(base: ml_collections.ConfigDict, grid: Grid, methods: Sequence[str],
         seeds: Sequence[int], workdir: str, overridden: Sequence[str] = ()) -> list[Run]:
  """Every run of the sweep, each config built and checked; touches no file.

  `overridden`: the base config's keys set on the command line; with the grid's axes,
  each must act in every run of its method (validate.check_knobs_act).
  """
  unknown = [m for m in methods if m not in base.methods]
  if unknown or not methods:
    raise ValueError(f"unknown student method(s) {unknown or methods}; allowed: "
                     f"{', '.join(base.methods)}")
  if not seeds:
    raise ValueError("at least one seed is needed")
  _check_axes_reach_methods(grid, methods)
  knobs = [*overridden, *(k for k, _ in grid)]
  runs_ = []
  for index, overrides in enumerate(cells(grid)):
    for method in methods:
      for seed in seeds:
        cfg = ml_collections.ConfigDict(base.to_dict()).lock()
        for key, value in overrides.items():
          try:
            _set(cfg, key, value)
          except (TypeError, ValueError) as e:
            raise ValueError(f"grid key {key!r}={value!r}: {e}") from None
        cfg.seed = seed
        cfg.student.method = method
        cfg.workdir = workdir
        try:
          _preflight(cfg)
        except ValueError as e:
          raise ValueError(f"cell {overrides or '(base)'}, method {method}: {e}") from None
        teacher_dir = None
        if needs_teacher(cfg):
          teacher_dir = cfg.teacher.checkpoint or os.path.join(
              workdir, "teachers", teacher_key(cfg, base.seed))
        name = f"{method}_s{seed}_{run_key(cfg, base.seed)}"
        runs_.append(Run(index, overrides, method, seed, cfg,
                         os.path.join(workdir, "students", name), teacher_dir))
  # After every value was checked: a bad value is the first thing to hear about.
  for run in runs_:
    try:
      validate.check_knobs_act(run.cfg, [run.method], knobs)
    except ValueError as e:
      raise ValueError(f"cell {run.overrides or '(base)'}, method {run.method}: {e}") from None
  return runs_


class _Resources:
  """The dataset and teacher of the current runs, loaded only when a run trains.

  One of each is kept: runs come cell by cell, so consecutive runs share them, and
  a sweep over data.imbalance should not hold every dataset in memory.
  """

  def __init__(self, base_seed: int):
    self.base_seed = base_seed
    self._data: tuple[str, Any] = ("", None)
    self._teacher: tuple[str, Any] = ("", None)
    self.teachers_trained = 0

  def data(self, cfg):
    from krd_jax import runs
    key = _digest(_as_dict(cfg)["data"])
    if self._data[0] != key:
      self._data = (key, runs.load_data(cfg))
    return self._data[1]

  def teacher(self, run: Run, ds, mesh):
    """The run's teacher: loaded from its folder, or trained there first."""
    from krd_jax.train import checkpoints as ckpt_lib
    from krd_jax.train import teacher as teacher_lib
    if self._teacher[0] != run.teacher_dir:
      if run.cfg.teacher.checkpoint or ckpt_lib.read_teacher_meta(run.teacher_dir):
        t = teacher_lib.load_teacher(run.cfg, ds, mesh, run.teacher_dir)
      else:
        # Every teacher trains with the base seed: its folder (and so its config.json)
        # must not depend on which student seed happened to ask first.
        tcfg = ml_collections.ConfigDict(run.cfg.to_dict()).lock()
        tcfg.seed = self.base_seed
        t = teacher_lib.train_teacher(tcfg, ds, mesh, run.teacher_dir)
        self.teachers_trained += 1
      self._teacher = (run.teacher_dir, t)
    return self._teacher[1]


def _final_path(run: Run) -> str:
  return os.path.join(run.run_dir, "final.json")


def _final(run: Run) -> dict:
  """The run's final.json: {"test", "val", "post_hoc", ...}."""
  with open(_final_path(run)) as f:
    return json.load(f)


def execute(run: Run, res: _Resources) -> tuple[str, dict | None]:
  """Trains (or resumes) one run unless it is finished; returns (status, final record:
  its final.json, test summary under "test").

  status: "reused" (final.json was there), "trained", or "diverged" (NaN/Inf loss; the
  run is reported without accuracies and retried by the next invocation).
  """
  from krd_jax import runs
  from krd_jax.train import loop
  from krd_jax.train import student as student_lib
  if os.path.exists(_final_path(run)):
    return "reused", _final(run)
  ds = res.data(run.cfg)
  mesh = runs.make_mesh(run.cfg)
  teacher = res.teacher(run, ds, mesh) if run.teacher_dir else None
  try:
    student_lib.train_student(run.cfg, ds, mesh, teacher, run.run_dir)
    return "trained", _final(run)
  except loop.NonFiniteLossError as e:
    tqdm.write(f"{run.run_dir}: {e}")
    return "diverged", None


def run_label(run: Run) -> str:
  """'KRDistill (krd) seed 1, methods.krd.lam=0.5': what a progress line names."""
  cell = ", ".join(f"{k}={v}" for k, v in run.overrides.items()) or "base config"
  return f"{methods.display_name(run.method)} seed {run.seed}, {cell}"


def outcome_text(status: str, final: dict | None) -> str:
  """'balanced 81.2, tail 60.0 (trained)' (test); 'diverged (NaN/Inf loss)'."""
  if final is None:
    return f"{status} (NaN/Inf loss)" if status == "diverged" else status
  test = final["test"]
  return f"balanced {test['balanced']:.1f}, tail {test['tail']:.1f} ({status})"


def parallel_groups(runs_: Sequence[Run], size: int) -> list[list[Run]]:
  """The unfinished runs of one cell, as groups of up to `size` seeds of one method
  that can train as one vmapped program and are expected to gain from it (the rest,
  and single runs, are left to `execute`)."""
  from krd_jax.train import seeds as seeds_lib
  by_method: dict[str, list[Run]] = {}
  for run in runs_:
    if (not os.path.exists(_final_path(run)) and seeds_lib.seed_dependence(run.cfg) is None
        and seeds_lib.pays_off(run.cfg)):
      by_method.setdefault(run.method, []).append(run)
  groups = []
  for members in by_method.values():
    groups += [members[i:i + size] for i in range(0, len(members), size)]
  return [g for g in groups if len(g) > 1]


def execute_group(group: Sequence[Run], res: _Resources,
                  workdir: str) -> list[tuple[str, dict | None]]:
  """Trains (or resumes) a group of seeds as one vmapped program (--parallel-seeds);
  returns each run's (status, final record) as `execute` would."""
  from krd_jax import runs
  from krd_jax.train import loop
  from krd_jax.train import seeds as seeds_lib
  first = group[0]
  seeds = "-".join(str(r.seed) for r in group)
  group_dir = os.path.join(workdir, "parallel", f"{first.method}_s{seeds}_"
                           f"{_digest([r.run_dir for r in group])}")
  ds = res.data(first.cfg)
  mesh = runs.make_mesh(first.cfg)
  teacher = res.teacher(first, ds, mesh) if first.teacher_dir else None
  try:
    seeds_lib.train_students_parallel(
        [r.cfg for r in group], ds, mesh, teacher, [r.run_dir for r in group], group_dir)
  except loop.NonFiniteLossError as e:
    tqdm.write(f"{group_dir}: {e} (every seed of the group is reported diverged)")
    return [("diverged", None)] * len(group)
  return [("trained", _final(run)) for run in group]


# ----------------------------------------------------------------------------- reports


def _short_names(keys: Sequence[str]) -> dict[str, str]:
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


def result_rows(runs_: list[Run], outcomes: list[tuple[str, dict | None]],
                keys: Sequence[str]) -> list[dict]:
  """One flat row per run: cell, swept values, method, seed, status, accuracies."""
  rows = []
  for run, (status, final) in zip(runs_, outcomes):
    row = {"cell": run.cell, **{k: _fmt(run.overrides[k]) for k in keys},
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


def _write_csv(path: str, rows: list[dict]) -> None:
  with open(path, "w", newline="") as f:
    writer = csv.DictWriter(f, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)


def _label(entry: dict, keys: Sequence[str], short: dict[str, str]) -> str:
  swept = " ".join(f"{short[k]}={entry[k]}" for k in keys)
  return f"{methods.display_name(entry['method'])} {swept}".strip()


def summary_markdown(summary: list[dict], keys: Sequence[str], grid: Grid,
                     seeds: Sequence[int], teachers: dict[str, dict]) -> str:
  """summary.md: the grid, then one table row per cell x method (mean ± std)."""
  from krd_jax.train import metrics as metrics_lib
  short = _short_names(keys)
  table_rows = {}
  for entry in summary:
    label = _label(entry, keys, short)
    if entry["diverged"]:
      label += f" ({entry['diverged']} diverged)"
    table_rows[label] = {m: (entry[m], entry[f"{m}_std"]) for m in METRICS}
  axes = "\n".join(f"- `{k}`: {', '.join(_fmt(v) for v in values)}" for k, values in grid)
  text = (f"# Ablation\n\nTest accuracy (%), mean ± std over seeds "
          f"{', '.join(map(str, seeds))} (sample std; groups as in metrics.summarize).\n\n"
          f"Grid:\n{axes or '- (none: the base config only)'}\n\n"
          f"{metrics_lib.format_table(table_rows)}\n")
  selection = {label: {c: (entry[c], entry[f"{c}_std"]) for c in SELECTION}
               for label, entry in zip(table_rows, summary)}
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


def _affects(key: str, method: str) -> bool:
  """Whether swept `key` can change a `method` run (methods.X.* only affect X)."""
  return not key.startswith("methods.") or key.startswith(f"methods.{method}.")


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
  short = _short_names(keys)
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
  ax.legend(fontsize=8)
  fig.tight_layout()
  fig.savefig(path, dpi=120)
  plt.close(fig)
  return path


def plot_per_class_means(runs_: list[Run], outcomes: list[tuple[str, dict | None]],
                         teachers: dict[str, dict], train_counts: np.ndarray,
                         path: str) -> str:
  """per_class.png of a one-cell sweep: each method's seed-mean test accuracy per class
  (diverged runs left out) and each teacher's (`teachers`: _teacher_rows), against the
  class's training count."""
  from krd_jax.train import metrics as metrics_lib
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


def _teacher_rows(runs_: list[Run]) -> dict[str, dict]:
  from krd_jax.train import checkpoints as ckpt_lib
  rows = {}
  for d in dict.fromkeys(r.teacher_dir for r in runs_ if r.teacher_dir):
    meta = ckpt_lib.read_teacher_meta(d)
    if meta is not None:
      rows[f"{meta['model']} ({os.path.basename(os.path.normpath(d))})"] = meta["test"]
  return rows


# ----------------------------------------------------------------------------- the sweep


def run_sweep(base: ml_collections.ConfigDict, grid: Grid | str, methods: Sequence[str],
              seeds: Sequence[int], workdir: str, out: str | None = None,
              parallel_seeds: int = 1) -> dict:
  """Runs (or resumes) a whole sweep and writes its reports.

  Args:
    base: the base config (its `seed` seeds the teachers).
    grid: parsed axes (`parse_grid`) or the grid string itself.
    methods: student methods, each run in every cell.
    seeds: student seeds.
    workdir: where teachers and student runs live.
    out: where the reports go; default `workdir`.
    parallel_seeds: train up to this many seeds of a cell x method as one vmapped
      program (krd_jax.train.seeds); 1 trains them in turn. Results are the same
      to float32 rounding.

  Returns:
    {"rows": per-run rows, "summary": per cell x method, "table": summary markdown,
     "files": {name: path}, "trained": student runs trained now,
     "teachers_trained": teachers trained now}.
  """
  if isinstance(grid, str):
    grid = parse_grid(grid, base)
  if int(parallel_seeds) < 1:
    raise ValueError(f"--parallel-seeds={parallel_seeds}; allowed: 1 or more")
  keys = [k for k, _ in grid]
  all_runs = plan(base, grid, methods, seeds, workdir)  # every error before any write
  out = out or workdir
  os.makedirs(out, exist_ok=True)

  res = _Resources(base.seed)
  outcomes: list[tuple[str, dict | None]] = []
  seen: dict[str, tuple[str, dict | None]] = {}  # run dir -> outcome, for shared runs
  by_cell = itertools.groupby(all_runs, key=lambda r: r.cell)
  # One bar over every run, and one line per run as it finishes: a notebook cell (where
  # the per-step bars of each run stay hidden) shows where a long sweep is.
  bar = tqdm(total=len(all_runs), desc="ablation runs", unit="run",
             disable=not base.progress, dynamic_ncols=True)
  from krd_jax.train import seeds as seeds_lib
  if parallel_seeds > 1 and any(not seeds_lib.pays_off(r.cfg) for r in all_runs):
    tqdm.write("--parallel-seeds: convolutional students on CPU run their seeds in turn "
               "(vmapped, XLA:CPU runs their convolutions 2x slower; benchmarks/RESULTS.md)")
  for _, cell_runs in by_cell:
    cell_runs = list(cell_runs)
    grouped: dict[str, tuple[str, dict | None]] = {}  # trained now, seeds in parallel
    if parallel_seeds > 1:
      pending = [r for r in cell_runs if r.run_dir not in seen]
      for group in parallel_groups(pending, parallel_seeds):
        bar.set_postfix_str(f"{run_label(group[0])} x{len(group)} seeds", refresh=True)
        grouped.update(zip((r.run_dir for r in group), execute_group(group, res, workdir)))
    for run in cell_runs:
      bar.set_postfix_str(run_label(run), refresh=True)
      if run.run_dir in grouped:
        seen[run.run_dir] = grouped.pop(run.run_dir)
      elif run.run_dir not in seen:
        seen[run.run_dir] = execute(run, res)
      else:  # a run shared with an earlier cell: one training, one divergence
        status, summary = seen[run.run_dir]
        seen[run.run_dir] = ("reused" if status == "trained" else status, summary)
      outcomes.append(seen[run.run_dir])
      if base.progress:
        bar.write(f"[{len(outcomes)}/{len(all_runs)}] {run_label(run)}: "
                  f"{outcome_text(*seen[run.run_dir])}")
      bar.update(1)
  bar.close()

  rows = result_rows(all_runs, outcomes, keys)
  summary = aggregate(rows, keys)
  teachers = _teacher_rows(all_runs)
  table = summary_markdown(summary, keys, grid, seeds, teachers)
  files = {"results.csv": os.path.join(out, "results.csv"),
           "summary.csv": os.path.join(out, "summary.csv"),
           "summary.md": os.path.join(out, "summary.md")}
  _write_csv(files["results.csv"], rows)
  _write_csv(files["summary.csv"], summary)
  with open(files["summary.md"], "w") as f:
    f.write(table)
  if keys:
    files["plot"] = plot_balanced(
        summary, keys, os.path.join(out, f"balanced_vs_{keys[0].replace('.', '_')}.png"))
  else:  # one cell: each method's per-class accuracy against its class's training count
    files["per_class_plot"] = plot_per_class_means(
        all_runs, outcomes, teachers, res.data(all_runs[0].cfg).train_counts,
        os.path.join(out, "per_class.png"))
  return {"rows": rows, "summary": summary, "table": table, "files": files,
          "trained": sum(s == "trained" for s, _ in outcomes),
          "teachers_trained": res.teachers_trained}


# ----------------------------------------------------------------------------- CLI


def _seeds(text: str, base_seed: int) -> list[int]:
  """'3' -> three seeds from the base seed on; '0,4,7' -> exactly those."""
  if "," in text:
    return [int(s) for s in text.split(",") if s]
  return list(range(base_seed, base_seed + int(text)))


def _refuse(message: str) -> None:
  """Bad input: one line on stderr and exit status 2, as `python -m krd_jax` does."""
  print(f"error: {message}", file=sys.stderr, flush=True)
  raise SystemExit(2)


def _main(argv: list[str]) -> None:
  from absl import flags
  from absl import logging

  # Orbax and tfds log every save at INFO; the progress bars and the table say enough.
  logging.set_verbosity(logging.WARNING)
  if len(argv) > 1:
    raise SystemExit(f"unexpected arguments {argv[1:]}\n{__doc__}")
  f = flags.FLAGS
  base = f.config
  workdir = f.workdir or f"{base.workdir}_ablate"
  methods = [m for m in f.methods.split(",") if m] if f.methods else [base.student.method]
  try:  # a bad grid, method or seed: one line, not a traceback
    grid = parse_grid(f.grid, base)
    seeds = _seeds(f.seeds, base.seed)
    plan(base, grid, methods, seeds, workdir, config_lib.overridden_keys(sys.argv))
  except ValueError as e:
    _refuse(str(e))
  if f.parallel_seeds < 1:
    _refuse(f"--parallel-seeds={f.parallel_seeds}; allowed: 1 or more")
  result = run_sweep(base, grid, methods, seeds, workdir, f.out, f.parallel_seeds)
  print(result["table"])
  print(f"{result['trained']} student run(s) and {result['teachers_trained']} "
        f"teacher(s) trained now; {len(result['rows'])} runs in the sweep.")
  for name, path in result["files"].items():
    print(f"{name}: {os.path.abspath(path)}")


def main() -> None:
  from krd_jax.tf_env import quiet_tensorflow
  quiet_tensorflow()
  from absl import app
  from absl import flags
  from ml_collections import config_flags

  config_flags.DEFINE_config_file(
      "config", configs.path(configs.DEFAULT),
      "base configuration: a shipped recipe (NAME[:ARG]) or a config file (FILE[:ARG])",
      lock_config=True)
  flags.DEFINE_string("grid", "", 'axes "key=v1,v2 key2=v3,v4" (cartesian product)')
  flags.DEFINE_string("methods", "", "comma-separated student methods "
                      "(default: the config's student.method)")
  flags.DEFINE_string("seeds", "1", "number of seeds (from the config's seed on), or "
                      "a comma-separated list of seeds")
  flags.DEFINE_string("workdir", "", "teachers and runs (default: <config workdir>_ablate)")
  flags.DEFINE_string("out", "", "reports folder (default: the workdir)")
  flags.DEFINE_integer("parallel_seeds", 1, "train up to this many seeds of a cell and "
                       "method as one vmapped program (1: in turn); also --parallel-seeds")
  # absl names flags with underscores; accept the dashed spelling the docs use.
  sys.argv = [re.sub(r"^--parallel-seeds\b", "--parallel_seeds", a) for a in sys.argv]
  try:
    sys.argv = configs.resolve_argv(sys.argv)  # a shipped recipe's name -> its file
  except ValueError as e:
    _refuse(str(e))
  app.run(_main)


if __name__ == "__main__":
  main()
