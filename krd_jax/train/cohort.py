"""Students of one seed trained together: the frozen teacher runs once per step for all.

The methods of one seed see the same batches and the same augmented views: the data
order comes from `DatasetLoader(ds, batch_size, mesh, seed)` and the augmentation key
from `PRNGKey(seed + 1)` (student.student_setup), neither from the method. A frozen
teacher therefore computes the same outputs for each of them, and a sweep that trains
them one after another repeats the teacher's forward pass (two thirds of a ResNet KD
step's FLOPs) once per method. A cohort is those students as one jitted program: one
teacher forward per step, handed to every student's own update (steps.
make_student_update), each student with its own parameters, optimiser state, warm-up
and objective. Each ends where it would have ended trained alone, to float32 rounding
(tests/test_cohort.py).

The cohort checkpoints, resumes and logs as one run in its own folder (metrics are
per member, "<member>/loss", plus their means; a member is named by its method, or
"<method>_<k>" where a method appears k-th time with other hyper-parameters, say a grid
over methods.krd.beta); at the end each student's run folder
gets the config.json and final.json a solo run would have written, so sweeps and the
demo read them the same way. A NaN/Inf loss in any student stops the cohort.

Example:
  cfgs = [runs.with_method(cfg, m) for m in ("kd", "dkd", "krd")]
  train_cohort(cfgs, ds, mesh, teacher, [f"runs/{m}" for m in ...], "runs/cohort")
"""

from __future__ import annotations

import json
import os
from typing import Any, Callable, Sequence

import jax
import ml_collections
import numpy as np
from jax.sharding import Mesh

from krd_jax import sharding
from krd_jax.train import evaluation
from krd_jax.train import loop
from krd_jax.train import run_dir as run_dir_lib
from krd_jax.train import state as state_lib
from krd_jax.train import steps as steps_lib
from krd_jax.train import student as student_lib
from krd_jax.train.state import TrainState
from krd_jax.train.teacher import Teacher


def shared_part(cfg: ml_collections.ConfigDict) -> dict:
  """What the students of one cohort must share: the run's config without the student
  method and the method sections."""
  d = json.loads(cfg.to_json_best_effort())
  d.pop("methods")
  d["student"].pop("method")
  return d


class CohortTooLarge(RuntimeError):
  """The cohort's compiled step needs more device memory than the budget; str() is one
  line saying how much, against what. Nothing was written: train each student alone."""


# The share of the device's memory a cohort's step may plan to use.
MEMORY_BUDGET = 0.9


def device_memory_limit(mesh: Mesh) -> int | None:
  """Bytes one device of `mesh` can hold (None where the platform does not say: CPU)."""
  stats = mesh.devices.flat[0].memory_stats()
  return (stats or {}).get("bytes_limit")


def check_fits(step_fn: Callable, state: TrainState, example: Callable[[], dict],
               rng: jax.Array, mesh: Mesh, budget: float = MEMORY_BUDGET) -> None:
  """Raises CohortTooLarge where the compiled cohort step (its arguments, outputs and
  temporaries, from XLA's memory analysis of the step on `example()`, a global batch)
  exceeds `budget` of a device's memory. Free where the platform states no limit."""
  limit = device_memory_limit(mesh)
  if not limit:
    return
  stats = step_fn.lower(state, example(), rng).compile().memory_analysis()
  needed = (stats.argument_size_in_bytes + stats.output_size_in_bytes +
            stats.temp_size_in_bytes - stats.alias_size_in_bytes)
  if needed > budget * limit:
    raise CohortTooLarge(f"a cohort step needs {needed / 2**30:.2f} GiB per device, more "
                         f"than {budget:.0%} of its {limit / 2**30:.2f} GiB")


def _method_kwargs(cfg: ml_collections.ConfigDict) -> dict:
  return cfg.methods[cfg.student.method].to_dict()


def member_names(cfgs: Sequence[ml_collections.ConfigDict]) -> list[str]:
  """Each student's key in the cohort's state and metrics: its method, or where a
  method appears more than once (with other hyper-parameters), "<method>_1",
  "<method>_2", ... in order."""
  methods = [c.student.method for c in cfgs]
  seen: dict[str, int] = {}
  names = []
  for m in methods:
    seen[m] = seen.get(m, 0) + 1
    names.append(m if methods.count(m) == 1 else f"{m}_{seen[m]}")
  return names


def check_cohort(cfgs: Sequence[ml_collections.ConfigDict]) -> None:
  """Raises ValueError unless `cfgs` are one run's students, no two of them the same
  method at the same hyper-parameters (that would train one student twice)."""
  if not cfgs:
    raise ValueError("cohort: no runs given")
  students = [(c.student.method, json.dumps(_method_kwargs(c), sort_keys=True))
              for c in cfgs]
  if len(set(students)) != len(students):
    raise ValueError(f"cohort: repeated students (a method at the same hyper-parameters) "
                     f"{[m for m, _ in students]}")
  first = shared_part(cfgs[0])
  for c in cfgs[1:]:
    other = shared_part(c)
    if other != first:
      keys = sorted(k for k in set(first) | set(other) if first.get(k) != other.get(k))
      raise ValueError(f"cohort: the runs differ in {keys}, not only in the student "
                       "method")


def cohort_state(setups: Sequence[student_lib.StudentSetup], names: Sequence[str],
                 teacher_variables: Any) -> TrainState:
  """The students' fresh states as one state: each member field (`state.MEMBER_FIELDS`)
  keyed by member name (`member_names`), one step count, the shared teacher."""
  return TrainState(step=setups[0].state.step, teacher=teacher_variables,
                    **_by_member({n: s.state for n, s in zip(names, setups)}))


def _by_member(states: dict[str, TrainState]) -> dict[str, dict]:
  """{field: {member: value}} of the members' own fields."""
  return {field: {n: getattr(s, field) for n, s in states.items()}
          for field in state_lib.MEMBER_FIELDS}


def member(state: TrainState, name: str) -> TrainState:
  """The state of the cohort's `name` student (without the teacher)."""
  return TrainState(step=state.step, **{field: value[name] for field, value in
                                        state.member_fields().items()})


def make_cohort_step(teacher_model: Any, updates: dict[str, Callable],
                     preprocess: Callable, teacher_stages: bool = False) -> Callable:
  """step(state, batch, rng) -> (state, metrics): the batch augmented once, the teacher
  run once (with its stage maps where any member reads them), then every student's
  update (`steps.make_student_update`) on both."""
  def step(state: TrainState, batch: dict, rng: jax.Array):
    x = preprocess(batch["image"], jax.random.fold_in(rng, state.step))
    teacher_out = steps_lib.teacher_outputs(teacher_model, state.teacher, x, teacher_stages)
    new_states, metrics = {}, {}
    for name, update in updates.items():
      new_states[name], parts = update(member(state, name), x, batch, teacher_out, rng)
      metrics.update({f"{name}/{k}": v for k, v in parts.items()})
    # What fit reads to log, guard and show: means (and the count of non-finite losses).
    for key in ("loss", "accuracy", "grad_norm"):
      metrics[key] = sum(metrics[f"{n}/{key}"] for n in updates) / len(updates)
    metrics["nonfinite"] = sum(metrics[f"{n}/nonfinite"] for n in updates)
    return state.replace(step=state.step + 1, **_by_member(new_states)), metrics

  return step


def _mean_summary(summaries: dict[str, dict]) -> dict:
  """Member-mean of each scalar (what the cohort logs and ranks checkpoints by), plus
  each member's balanced accuracy."""
  first = next(iter(summaries.values()))
  scalars = [k for k, v in first.items() if isinstance(v, (int, float))]
  out = {k: float(np.mean([s[k] for s in summaries.values()])) for k in scalars}
  out.update({f"balanced_{n}": s["balanced"] for n, s in summaries.items()})
  return out


def train_cohort(cfgs: Sequence[ml_collections.ConfigDict], ds, mesh: Mesh,
                 teacher: Teacher | None, run_dirs: Sequence[str],
                 cohort_dir: str) -> list[dict]:
  """Trains the students of `cfgs` (one run's methods, or one method at several
  hyper-parameters; one seed) as one program that runs the teacher once per step.

  Args:
    cfgs: configs equal but for the student method and the method sections
      (`check_cohort`).
    ds, mesh: as for `student.train_student`.
    teacher: the frozen teacher (None only if no student reads one).
    run_dirs: each student's run folder; config.json and final.json are written there
      as a solo run would.
    cohort_dir: the cohort's own run folder (checkpoints, metrics.jsonl); the same
      call resumes it after an interruption.

  Returns:
    Each student's final test summary, in the order of `cfgs`.

  Raises:
    ValueError: the configs are not one cohort, or run_dirs does not match.
    CohortTooLarge: the step would not fit the device's memory (nothing written).
    loop.NonFiniteLossError: any student's loss became NaN/Inf (the cohort stops).
  """
  check_cohort(cfgs)
  if len(run_dirs) != len(cfgs):
    raise ValueError(f"cohort: {len(cfgs)} configs but {len(run_dirs)} run folders")
  names = member_names(cfgs)
  setups = [student_lib.student_setup(c, ds, mesh, teacher) for c in cfgs]
  first = setups[0]
  readers = [s.teacher_variables is not None for s in setups]
  updates = {n: s.update for n, s in zip(names, setups)}
  step_fn = steps_lib.jit_train_step(make_cohort_step(
      teacher.model if any(readers) else None, updates, first.preprocess,
      any(s.reads_teacher_stages for s in setups)), mesh)
  state = sharding.replicate(cohort_state(setups, names, student_lib.private_teacher_copy(
      teacher.variables if any(readers) else None)), mesh)
  eval_step = steps_lib.jit_eval_step(first.eval_step, mesh)  # one student model for all
  check_fits(step_fn, state, lambda: next(iter(first.loader.epoch(0))), first.rng, mesh)

  def evaluate_all(s: TrainState, split: str) -> dict[str, dict]:
    return {n: evaluation.evaluate(eval_step, member(s, n).model_variables(), ds, split,
                                   mesh) for n in names}

  # Only now is anything written: every check above runs first.
  for cfg, run_dir in zip(cfgs, run_dirs):
    run_dir_lib.check_run_dir(run_dir, run_dir_lib.student_json(cfg, teacher))
  run_dir_lib.check_run_dir(cohort_dir, {**run_dir_lib.role_json(cfgs[0], "student"),
                                         "student": None, "method_kwargs": None,
                                         "teacher_sha256": run_dir_lib.teacher_sha256(
                                             teacher if any(readers) else None),
                                         "cohort": {n: _method_kwargs(c)
                                                    for n, c in zip(names, cfgs)}})
  scfg = cfgs[0].student
  state = loop.fit(run_dir=cohort_dir, cadence=loop.Cadence.of(cfgs[0]), epochs=scfg.epochs,
                   state=state, step_fn=step_fn,
                   eval_fn=lambda s, split: _mean_summary(evaluate_all(s, split)),
                   loader=first.loader, rng=first.rng,
                   desc=f"students {scfg.model} {'+'.join(names)}",
                   select_split=evaluation.select_split(ds))
  tests, vals = evaluation.test_and_val(lambda split: evaluate_all(state, split), ds)
  post_hoc_step = evaluation.post_hoc_step(first.model, first.preprocess, ds, mesh)
  for name, cfg, run_dir, setup in zip(names, cfgs, run_dirs, setups):
    variables = member(state, name).model_variables()
    post_hoc = evaluation.post_hoc_adjusted(first.model, variables, first.preprocess, ds,
                                            mesh, step=post_hoc_step)
    student_lib.write_final(run_dir, cfg.student, tests[name],
                            vals[name] if vals else None, post_hoc, setup.constants,
                            trained_in=os.path.abspath(cohort_dir))
  return [tests[n] for n in names]
