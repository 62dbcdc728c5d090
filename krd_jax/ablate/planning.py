"""A sweep's plan: every cell x method x seed as a `Run`, each config built and checked
before anything is trained or written; runs with identical effective configurations
share one folder."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from typing import Any, Sequence

import ml_collections

from krd_jax import methods as methods_lib
from krd_jax import validate
from krd_jax.ablate.grid import Grid
from krd_jax.ablate.grid import cells
from krd_jax.ablate.grid import set_field

def digest(obj: Any) -> str:
  """A short stable name for a JSON-able value."""
  text = json.dumps(obj, sort_keys=True, default=str)
  return hashlib.sha256(text.encode()).hexdigest()[:10]


def _as_dict(cfg: ml_collections.ConfigDict) -> dict:
  return json.loads(cfg.to_json_best_effort())


def data_key(cfg: ml_collections.ConfigDict) -> str:
  """Names the dataset a run reads (runs with equal keys can share one in memory)."""
  return digest(_as_dict(cfg)["data"])


def teacher_key(cfg: ml_collections.ConfigDict, teacher_seed: int) -> str:
  """Names the teacher a run needs: everything that shapes the teacher's training."""
  if cfg.teacher.checkpoint:
    return digest({"checkpoint": os.path.abspath(cfg.teacher.checkpoint)})
  d = _as_dict(cfg)
  return digest({"data": d["data"], "teacher": d["teacher"], "seed": teacher_seed,
                  "compute_dtype": d["compute_dtype"], "num_devices": d["num_devices"]})


def needs_teacher(cfg: ml_collections.ConfigDict) -> bool:
  return validate.needs_teacher(cfg, cfg.student.method)


def run_key(cfg: ml_collections.ConfigDict, teacher_seed: int) -> str:
  """Names a student run by what shapes its result, so identical runs are shared.

  Only the run's own method's hyperparameters count (a kd student does not change
  with methods.krd.beta), and the teacher counts by its key, not by path.
  """
  d = _as_dict(cfg)
  for name in ("workdir", "progress", "demo_methods", "methods", "teacher", "distributed"):
    d.pop(name)
  d["method_kwargs"] = cfg.methods[cfg.student.method].to_dict()
  d["teacher_key"] = teacher_key(cfg, teacher_seed) if needs_teacher(cfg) else None
  return digest(d)


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


def every_method(base: ml_collections.ConfigDict) -> tuple[list[str], dict[str, str]]:
  """`--methods all`: every registered method the base config's models and data can run.

  Returns:
    (the methods, {left-out method: why}): a method that reads stage maps is left out
    where the student or teacher model offers none (the MLP), one that reads sample
    indices where the data are streamed; the reason is the refusal a run of it gets.
  """
  chosen, left_out = [], {}
  for name in methods_lib.names():
    try:
      validate.check_method_inputs(base, name)
    except validate.InputError as error:
      left_out[name] = str(error).split(";")[0]
    else:
      chosen.append(name)
  return chosen, left_out


def _preflight(cfg: ml_collections.ConfigDict) -> None:
  """The run's method checks its hyper-parameters now, so a bad value (say
  methods.krd.lam=2) fails before hours of earlier cells, not after."""
  methods_lib.get(cfg.student.method).check(cfg.methods[cfg.student.method].to_dict())
  validate.check_method_inputs(cfg, cfg.student.method)


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
            set_field(cfg, key, value)
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


