"""Running a planned sweep: each run trained (or resumed, or reused) through the
experiment of its data and teacher, then reported (krd_jax.reports)."""

from __future__ import annotations

import itertools
import json
import os
from typing import Callable, Sequence

import ml_collections
from tqdm.auto import tqdm

from krd_jax import config as config_lib
from krd_jax import methods as methods_lib
from krd_jax import reports
from krd_jax.ablate.grid import Grid
from krd_jax.ablate.grid import parse_grid
from krd_jax.ablate.planning import Run
from krd_jax.ablate.planning import data_key
from krd_jax.ablate.planning import digest
from krd_jax.ablate.planning import plan
from krd_jax.experiment import Experiment
from krd_jax.train import cohort as cohort_lib
from krd_jax.train import loop
from krd_jax.train import seeds as seeds_lib

Outcome = tuple[str, "dict | None"]  # (status, the run's final.json or None)


class Experiments:
  """The experiment of the current runs, one at a time: runs come cell by cell, and a
  sweep over data.imbalance should not hold every dataset in memory. Where only the
  teacher changes, the next experiment keeps the dataset."""

  def __init__(self, base_seed: int, data=None):
    self.base_seed = base_seed
    self._data = data  # one dataset given for every run, or None: each loads its own
    self._current: Experiment | None = None
    self._key: tuple | None = None  # ((data key, num_devices), teacher_dir)
    self._teachers_trained = 0

  def for_run(self, run: Run) -> Experiment:
    """The experiment of `run`'s data, mesh and teacher (the current one if it fits)."""
    data = (data_key(run.cfg), run.cfg.num_devices)
    if self._current is not None and self._key[0] == data and (
        run.teacher_dir is None or run.teacher_dir == self._key[1]):
      return self._current  # a teacher-free run fits any experiment on its data
    # Every teacher trains with the base seed: its folder (and so its config.json)
    # must not depend on which student seed happened to ask first.
    cfg = ml_collections.ConfigDict(run.cfg.to_dict())
    cfg.seed = self.base_seed
    cfg = cfg.lock()
    if self._current is not None:
      self._teachers_trained += self._current.teacher_trained
    if self._current is not None and self._key[0] == data:
      self._current = self._current.sibling(cfg, run.teacher_dir)
    else:
      self._current = Experiment(cfg, run.teacher_dir, data=self._data)
    self._key = (data, run.teacher_dir)
    return self._current

  @property
  def teachers_trained(self) -> int:
    return self._teachers_trained + (self._current.teacher_trained if self._current else 0)


def _final_path(run: Run) -> str:
  return os.path.join(run.run_dir, "final.json")


def _final(run: Run) -> dict:
  """The run's final.json: {"test", "val", "post_hoc", ...}."""
  with open(_final_path(run)) as f:
    return json.load(f)


def execute(run: Run, experiments: Experiments) -> Outcome:
  """Trains (or resumes) one run unless it is finished; returns (status, final record:
  its final.json, test summary under "test").

  status: "reused" (final.json was there), "trained", or "diverged" (NaN/Inf loss; the
  run is reported without accuracies and retried by the next invocation).
  """
  if os.path.exists(_final_path(run)):
    return "reused", _final(run)
  try:
    experiments.for_run(run).train_student(run.cfg, run.run_dir)
    return "trained", _final(run)
  except loop.NonFiniteLossError as e:
    tqdm.write(f"{run.run_dir}: {e}")
    return "diverged", None


def run_label(run: Run) -> str:
  """'KRDistill (krd) seed 1, methods.krd.beta=0.5': what a progress line names."""
  cell = ", ".join(f"{k}={v}" for k, v in run.overrides.items()) or "base config"
  return f"{methods_lib.display_name(run.method)} seed {run.seed}, {cell}"


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
  by_method: dict[str, list[Run]] = {}
  for run in runs_:
    hparams = run.cfg.methods[run.method].to_dict()
    if (not os.path.exists(_final_path(run))
        and seeds_lib.seed_dependence(run.method, hparams) is None
        and seeds_lib.pays_off(run.cfg.student.model)):
      by_method.setdefault(run.method, []).append(run)
  groups = []
  for members in by_method.values():
    groups += [members[i:i + size] for i in range(0, len(members), size)]
  return [g for g in groups if len(g) > 1]


def _trained_together(group: Sequence[Run], train: Callable[[], object], folder: str,
                      member: str) -> list[Outcome]:
  """The outcomes of runs that `train()` trains as one program: all trained, or all
  diverged (one NaN/Inf loss stops the program)."""
  try:
    train()
  except loop.NonFiniteLossError as e:
    tqdm.write(f"{folder}: {e} (every {member} is reported diverged)")
    return [("diverged", None)] * len(group)
  return [("trained", _final(run)) for run in group]


def execute_group(group: Sequence[Run], experiments: Experiments,
                  workdir: str) -> list[Outcome]:
  """Trains (or resumes) a group of seeds as one vmapped program (--parallel-seeds);
  returns each run's (status, final record) as `execute` would."""
  first = group[0]
  seeds = "-".join(str(r.seed) for r in group)
  group_dir = os.path.join(workdir, "parallel", f"{first.method}_s{seeds}_"
                           f"{digest([r.run_dir for r in group])}")
  exp = experiments.for_run(first)
  return _trained_together(
      group, lambda: exp.train_students_parallel([r.cfg for r in group],
                                                 [r.run_dir for r in group], group_dir),
      group_dir, "seed of the group")


def cohorts(runs_: Sequence[Run]) -> list[list[Run]]:
  """The unfinished runs, as groups of one seed that can train as one cohort (krd_jax.
  train.cohort: the teacher runs once per step for all): several methods, or one method
  at several settings from different cells of a grid (methods.krd.beta=0.5,1). Each
  run once, however many cells share it; single runs are left to `execute`."""
  by_key: dict[tuple, list[Run]] = {}
  placed: set[str] = set()  # a teacher-free run is shared by cells of other teachers
  for run in runs_:
    if run.run_dir not in placed and not os.path.exists(_final_path(run)):
      placed.add(run.run_dir)
      key = (run.seed, digest(cohort_lib.shared_part(run.cfg)))
      by_key.setdefault(key, []).append(run)
  return [g for g in by_key.values() if len(g) > 1]


def execute_cohort(group: Sequence[Run], experiments: Experiments,
                   workdir: str) -> list[Outcome]:
  """Trains (or resumes) one seed's students of several methods as one cohort; returns
  each run's (status, final record) as `execute` would. A cohort too large for the
  device's memory is split in two (down to students trained one by one), with one line
  saying so."""
  if len(group) == 1:
    return [execute(group[0], experiments)]
  reader = next((r for r in group if r.teacher_dir), group[0])
  cohort_dir = os.path.join(workdir, "cohorts", f"s{group[0].seed}_"
                            f"{digest([r.run_dir for r in group])}")
  exp = experiments.for_run(reader)
  try:
    return _trained_together(
        group, lambda: exp.train_cohort([r.cfg for r in group],
                                        [r.run_dir for r in group], cohort_dir),
        cohort_dir, "student of the cohort")
  except cohort_lib.CohortTooLarge as e:
    if len(group) > 2:
      half = (len(group) + 1) // 2
      tqdm.write(f"seed {group[0].seed}: {e}; its {len(group)} students train as two "
                 f"cohorts, of {half} and {len(group) - half}")
      return (execute_cohort(group[:half], experiments, workdir) +
              execute_cohort(group[half:], experiments, workdir))
    tqdm.write(f"seed {group[0].seed}: {e}; its {len(group)} students train one by one, "
               "each running the teacher")
    return [execute(run, experiments) for run in group]


def _train_all(all_runs: list[Run], experiments: Experiments, workdir: str,
               parallel_seeds: int, share_teacher: bool, progress: bool) -> list[Outcome]:
  """Every run's outcome, in plan order; a run shared by several cells trains once;
  with `share_teacher`, the students of one seed (every method, every cell whose data
  and teacher are the same) train as a cohort (one teacher pass)."""
  outcomes: list[Outcome] = []
  # One bar over every run, and one line per run as it finishes: a notebook cell (where
  # the per-step bars of each run stay hidden) shows where a long sweep is.
  bar = tqdm(total=len(all_runs), desc="ablation runs", unit="run", disable=not progress,
             dynamic_ncols=True)
  if parallel_seeds > 1 and any(not seeds_lib.pays_off(r.cfg.student.model)
                                for r in all_runs):
    tqdm.write("--parallel-seeds: convolutional students on CPU run their seeds in turn "
               "(vmapped, XLA:CPU runs their convolutions 2x slower; benchmarks/RESULTS.md)")
  done = 0

  def report(run, outcome) -> None:
    nonlocal done
    done += 1
    if progress:
      bar.write(f"[{done}/{len(all_runs)}] {run_label(run)}: {outcome_text(*outcome)}")
    bar.update(1)

  grouped: dict[str, Outcome] = {}  # trained together, reported as each group ends

  def train_together(group, train, label: str) -> None:
    bar.set_postfix_str(label, refresh=True)
    for run, outcome in zip(group, train(group, experiments, workdir)):
      grouped[run.run_dir] = outcome
      report(run, outcome)

  if parallel_seeds > 1:
    for _, cell_runs in itertools.groupby(all_runs, key=lambda r: r.cell):
      pending = [r for r in cell_runs if r.run_dir not in grouped]
      for group in parallel_groups(pending, parallel_seeds):
        train_together(group, execute_group, f"{run_label(group[0])} x{len(group)} seeds")
  if share_teacher:  # across cells: a grid over one method's knobs shares the teacher too
    for group in cohorts([r for r in all_runs if r.run_dir not in grouped]):
      train_together(group, execute_cohort,
                     f"seed {group[0].seed}: {len(group)} students, one teacher pass")
  seen: dict[str, Outcome] = {}  # run dir -> outcome, for runs shared by several cells
  for run in all_runs:
    if run.run_dir in grouped:  # reported when its group ended
      seen[run.run_dir] = grouped.pop(run.run_dir)
      outcomes.append(seen[run.run_dir])
      continue
    bar.set_postfix_str(run_label(run), refresh=True)
    if run.run_dir not in seen:
      seen[run.run_dir] = execute(run, experiments)
    else:  # a run shared with an earlier cell: one training, one divergence
      status, summary = seen[run.run_dir]
      seen[run.run_dir] = ("reused" if status == "trained" else status, summary)
    outcomes.append(seen[run.run_dir])
    report(run, seen[run.run_dir])
  bar.close()
  return outcomes


def run_sweep(base: ml_collections.ConfigDict, grid: Grid | str, methods: Sequence[str],
              seeds: Sequence[int], workdir: str, out: str | None = None,
              parallel_seeds: int = 1, share_teacher: bool = True, data=None,
              overridden: Sequence[str] = ()) -> dict:
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
    share_teacher: train the methods of one seed in a cell as one cohort that runs the
      teacher once per step (krd_jax.train.cohort); False trains each alone. Results
      are the same to float32 rounding.
    data: a dataset already in memory (`krd_jax.data.load_arrays`, `from_arrays`) for
      every run instead of the one `base.data` names: where the source cannot be read
      (a machine without TensorFlow or the image folder). The grid may not vary data.*.
    overridden: the base config's keys set on the command line (config.
      overridden_keys): each must act in every run of its method, and summary.md names
      them with their values.

  Returns:
    {"rows": per-run rows, "summary": per cell x method, "table": summary markdown,
     "files": {name: path}, "trained": student runs trained now,
     "teachers_trained": teachers trained now}.
  """
  if isinstance(grid, str):
    grid = parse_grid(grid, base)
  if int(parallel_seeds) < 1:
    raise ValueError(f"--parallel-seeds={parallel_seeds}; allowed: 1 or more")
  varied_data = [key for key, _ in grid if key.startswith("data.")]
  if data is not None and varied_data:
    raise ValueError(f"a sweep given its dataset cannot vary data.*: {varied_data}")
  # Every error before any write.
  all_runs = plan(base, grid, methods, seeds, workdir, overridden)
  out = out or workdir
  os.makedirs(out, exist_ok=True)
  experiments = Experiments(base.seed, data)
  outcomes = _train_all(all_runs, experiments, workdir, parallel_seeds, share_teacher,
                        base.progress)
  result = reports.write_sweep_reports(
      out, all_runs, outcomes, grid, seeds,
      lambda: experiments.for_run(all_runs[0]).data.train_counts,
      [(key, config_lib.lookup(base, key)) for key in overridden])
  return {**result, "trained": sum(s == "trained" for s, _ in outcomes),
          "teachers_trained": experiments.teachers_trained}
