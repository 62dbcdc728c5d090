"""The CLI's commands from one config: teacher, student, evaluate, demo.

Each starts an `Experiment` (krd_jax.experiment: the run's data, mesh and teacher),
which checks the run (`krd_jax.validate.check_run`) and loads its data before anything
is written under the workdir, so bad input is refused with `validate.InputError` and
leaves no trace. Tables and plots come from `krd_jax.reports`.
"""

from __future__ import annotations

import json
import os
import sys
import time

import ml_collections

from krd_jax import distributed
from krd_jax import reports
from krd_jax import validate
from krd_jax.experiment import Experiment
from krd_jax.experiment import load_data  # noqa: F401  (callers load data through runs)
from krd_jax.experiment import make_mesh  # noqa: F401
from krd_jax.train import cohort as cohort_lib
from krd_jax.train import metrics as metrics_lib
from krd_jax.train import run_dir as run_dir_lib


def student_dir(cfg: ml_collections.ConfigDict, name: str | None = None) -> str:
  return os.path.join(cfg.workdir, "students", name or cfg.student.method)


def with_method(cfg: ml_collections.ConfigDict, method: str) -> ml_collections.ConfigDict:
  """A copy of `cfg` whose student uses `method`."""
  if method not in cfg.methods:
    raise ValueError(f"unknown student method {method!r}; allowed: {', '.join(cfg.methods)}")
  out = ml_collections.ConfigDict(cfg.to_dict())
  out.student.method = method
  return out.lock()


def teacher(cfg: ml_collections.ConfigDict) -> dict:
  """Trains (or reuses) the teacher; returns its test summary."""
  return Experiment.start(cfg, "teacher").teacher().summary


def student(cfg: ml_collections.ConfigDict) -> dict:
  """Trains the teacher if needed, then the configured student; returns its summary."""
  return Experiment.start(cfg, "student").train_student(cfg, student_dir(cfg))


def evaluate(cfg: ml_collections.ConfigDict) -> dict:
  """Evaluates the saved teacher and the newest checkpoint of the configured student run.

  Nothing is trained or written. Returns {"rows": {run: test summary}, "student": the
  student's {"step", "test", "val"}}.
  """
  exp = Experiment.start(cfg, "student")
  t = exp.saved_teacher()
  if t is None and validate.needs_teacher(cfg, cfg.student.method):
    raise validate.InputError(f"no saved teacher in {exp.teacher_dir}; student.method="
                              f"{cfg.student.method!r} needs one to be evaluated")
  rows = {}
  if t is not None:
    name = reports.teacher_row_name(cfg)
    rows[name] = exp.teacher_test()
    rows.update(reports.post_hoc_row(name, exp.teacher_post_hoc()))
  result = exp.evaluate_student(cfg, student_dir(cfg), t)
  name = f"{reports.student_row_name(cfg, cfg.student.method)} (step {result['step']})"
  rows[name] = result["test"]
  rows.update(reports.post_hoc_row(name, result["post_hoc"]))
  return {"rows": rows, "student": result}


def _finished(cfg: ml_collections.ConfigDict, teacher) -> dict | None:
  """The final.json of `cfg`'s student run where its folder holds that run (from
  `teacher`), finished."""
  return run_dir_lib.finished(student_dir(cfg), run_dir_lib.student_json(cfg, teacher))


def _train_demo_students(exp: Experiment, cfgs: list) -> dict[str, dict]:
  """Each demo student's final record (final.json): finished runs of the same
  configuration are read back, the others train as one cohort (one teacher pass per
  step for all of them, krd_jax.train.cohort); a folder holding another run is refused
  as a solo run would."""
  t = exp.teacher() if any(validate.needs_teacher(c, c.student.method) for c in cfgs) else None
  finals = {c.student.method: _finished(c, t) for c in cfgs}
  pending = [c for c in cfgs if finals[c.student.method] is None]
  if len(pending) > 1:
    names = [c.student.method for c in pending]
    try:
      exp.train_cohort(pending, [student_dir(c) for c in pending],
                       os.path.join(exp.cfg.workdir, "cohorts", "+".join(names)))
      pending = []
    except cohort_lib.CohortTooLarge as error:
      print(f"krd_jax: {error}; the demo's students train one by one", file=sys.stderr)
  for c in pending:
    exp.train_student(c, student_dir(c))
  for c in cfgs:  # the ones trained now: read once, after training
    if finals[c.student.method] is None:
      finals[c.student.method] = _finished(c, t)
  return finals


def demo(cfg: ml_collections.ConfigDict) -> dict:
  """Teacher, then one student per `cfg.demo_methods`; writes report.md and a plot.

  Returns:
    {"table": markdown str, "plot": path, "rows": {run: summary}, "seconds": float}.
  """
  start = time.time()
  exp = Experiment.start(cfg, "demo")
  teacher_name = reports.teacher_row_name(cfg)
  rows = {teacher_name: exp.teacher().summary}
  # The cheapest long-tail baseline: the teacher's own logits, prior-corrected.
  rows.update(reports.post_hoc_row(teacher_name, exp.teacher_post_hoc()))
  run_cfgs = [with_method(cfg, m) for m in cfg.demo_methods]
  finals = _train_demo_students(exp, run_cfgs)
  for run_cfg in run_cfgs:
    method = run_cfg.student.method
    rows[reports.student_row_name(cfg, method)] = finals[method]["test"]
    if not validate.needs_teacher(run_cfg, method):
      # The teacher-free bar a distillation method must beat includes the plain
      # student with its logits prior-corrected after training (tau chosen on val).
      rows.update(reports.post_hoc_row(reports.student_row_name(cfg, method),
                                       finals[method]["post_hoc"]))
  plot = os.path.join(cfg.workdir, "per_class_accuracy.png")
  if distributed.is_primary():
    reports.plot_demo(rows, exp.data, plot)
  seconds = time.time() - start
  if distributed.is_primary():
    with open(os.path.join(cfg.workdir, "report.md"), "w") as f:
      f.write(reports.demo_report(rows, exp.data, exp.mesh.devices.size, seconds))
    with open(os.path.join(cfg.workdir, "report.json"), "w") as f:
      json.dump(rows, f)
  return {"table": metrics_lib.format_table(rows), "plot": plot, "rows": rows,
          "seconds": seconds}
