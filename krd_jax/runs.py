"""Whole runs from one config: data, mesh, teacher, students, reports.

The CLI, the notebook and the ablation scripts all call these. Each run is checked
first (`krd_jax.validate.check_run`) and its data loaded before anything is written
under the workdir, so bad input is refused with `validate.InputError` and leaves no
trace.
"""

from __future__ import annotations

import functools
import json
import os
import time

import ml_collections

from krd_jax import distributed
from krd_jax import losses
from krd_jax import methods
from krd_jax import sharding
from krd_jax import validate
from krd_jax.data import load_dataset
from krd_jax.train import checkpoints
from krd_jax.train import evaluation
from krd_jax.train import metrics as metrics_lib
from krd_jax.train import steps as steps_lib
from krd_jax.train import student as student_lib
from krd_jax.train import teacher as teacher_lib


def load_data(cfg: ml_collections.ConfigDict):
  """The dataset `cfg.data` names (cached after the first call).

  Raises:
    validate.InputError: the data layer refused the data (a ValueError: empty
      classes, labels outside [0, C), split-list paths escaping the root, ...) or
      an image would not decode.
  """
  d = cfg.data
  try:
    load = functools.partial(
        load_dataset, d.name, imbalance=d.imbalance, profile=d.profile, seed=d.seed,
        val_per_class=d.val_per_class, data_dir=d.data_dir or None,
        split_list_dir=d.split_list_dir or None, cache_dir=d.cache_dir or None,
        n_max=d.n_max or None, image_size=d.image_size or None,
        streaming=True if d.streaming else None,
        progress=bool(cfg.progress) and distributed.is_primary())
    # Process 0 prepares and caches the data first; the others then read its cache.
    return distributed.primary_first(f"load {d.name}", load)
  except validate.InputError:
    raise
  except Exception as error:  # pylint: disable=broad-except
    if not isinstance(error, ValueError) and not _is_decode_error(error):
      raise
    first = (str(error).strip().splitlines() or [type(error).__name__])[0]
    raise validate.InputError(f"config.data.name={d.name!r}: the data was refused: "
                              f"{first}") from error


def _is_decode_error(error: BaseException) -> bool:
  """A TensorFlow op error (an image that would not decode), without importing TF."""
  return type(error).__module__.startswith("tensorflow")


def check_and_start(cfg: ml_collections.ConfigDict, command: str) -> None:
  """Checks the run, starting JAX's distributed runtime first where the config or
  the environment asks for it (it must start before any device is touched)."""
  validate.check_distributed(cfg)
  distributed.initialize(cfg.distributed)
  validate.check_run(cfg, command)


def make_mesh(cfg: ml_collections.ConfigDict):
  """The `data` mesh over `cfg.num_devices` (0: every device); batches were checked
  against it by `validate.check_run`."""
  return sharding.make_mesh(cfg.num_devices or None)


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
  check_and_start(cfg, "teacher")
  ds = load_data(cfg)
  return teacher_lib.ensure_teacher(cfg, ds, make_mesh(cfg)).summary


def student(cfg: ml_collections.ConfigDict) -> dict:
  """Trains the teacher if needed, then the configured student; returns its summary."""
  check_and_start(cfg, "student")
  ds = load_data(cfg)
  mesh = make_mesh(cfg)
  method_needs_teacher = validate.needs_teacher(cfg, cfg.student.method)
  t = teacher_lib.ensure_teacher(cfg, ds, mesh) if method_needs_teacher else None
  return student_lib.train_student(cfg, ds, mesh, t, student_dir(cfg))


def evaluate(cfg: ml_collections.ConfigDict) -> dict:
  """Evaluates the saved teacher and the newest checkpoint of the configured student run.

  Nothing is trained or written. Returns {"rows": {run: test summary}, "student": the
  student's {"step", "test", "val"}}.
  """
  check_and_start(cfg, "student")
  ds = load_data(cfg)
  mesh = make_mesh(cfg)
  teacher_dir = cfg.teacher.checkpoint or os.path.join(cfg.workdir, "teacher")
  t = None
  if checkpoints.read_teacher_meta(teacher_dir) is not None:
    t = teacher_lib.load_teacher(cfg, ds, mesh, teacher_dir)
  elif validate.needs_teacher(cfg, cfg.student.method):
    raise validate.InputError(f"no saved teacher in {teacher_dir}; student.method="
                              f"{cfg.student.method!r} needs one to be evaluated")
  rows = {}
  if t is not None:
    eval_step = steps_lib.jit_eval_step(steps_lib.make_eval_step(
        t.model, steps_lib.dataset_preprocess(cfg, ds), ds.num_classes), mesh)
    name = teacher_row_name(cfg)
    rows[name] = evaluation.evaluate(eval_step, t.variables, ds, "test", mesh)
    rows.update(_post_hoc_row(name, teacher_post_hoc(cfg, t, ds, mesh)))
  result = student_lib.train_student(cfg, ds, mesh, t, student_dir(cfg), evaluate_only=True)
  name = f"{student_row_name(cfg, cfg.student.method)} (step {result['step']})"
  rows[name] = result["test"]
  rows.update(_post_hoc_row(name, result["post_hoc"]))
  return {"rows": rows, "student": result}


def teacher_post_hoc(cfg: ml_collections.ConfigDict, t, ds, mesh) -> dict:
  """`evaluation.post_hoc_adjusted` of the teacher."""
  return evaluation.post_hoc_adjusted(t.model, t.variables,
                                      steps_lib.dataset_preprocess(cfg, ds), ds, mesh)


def teacher_row_name(cfg: ml_collections.ConfigDict) -> str:
  """'teacher resnet32 (LDAM-DRW)': a table row's name for the configured teacher."""
  title = losses.teacher_title(cfg.teacher.loss, cfg.teacher.drw_epoch)
  return f"teacher {cfg.teacher.model} ({title})"


def student_row_name(cfg: ml_collections.ConfigDict, method: str) -> str:
  """'student resnet8 KRDistill (krd)': a table row's name for a student of `method`."""
  return f"student {cfg.student.model} {methods.display_name(method)}"


def _post_hoc_row(name: str, post_hoc: dict) -> dict:
  """{table row name: test summary} of a post-hoc logit adjustment result."""
  chosen = "on val" if post_hoc["chosen_on"] == "val" else "no val split"
  return {f"{name} + post-hoc LA (tau {post_hoc['tau']:g}, {chosen})": post_hoc["test"]}


def demo(cfg: ml_collections.ConfigDict) -> dict:
  """Teacher, then one student per `cfg.demo_methods`; writes report.md and a plot.

  Returns:
    {"table": markdown str, "plot": path, "rows": {run: summary}, "seconds": float}.
  """
  start = time.time()
  check_and_start(cfg, "demo")
  ds = load_data(cfg)
  mesh = make_mesh(cfg)
  t = teacher_lib.ensure_teacher(cfg, ds, mesh)
  teacher_name = teacher_row_name(cfg)
  rows = {teacher_name: t.summary}
  # The cheapest long-tail baseline: the teacher's own logits, prior-corrected.
  rows.update(_post_hoc_row(teacher_name, teacher_post_hoc(cfg, t, ds, mesh)))
  for method in cfg.demo_methods:
    run_cfg = with_method(cfg, method)
    summary = student_lib.train_student(run_cfg, ds, mesh, t, student_dir(run_cfg))
    rows[student_row_name(cfg, method)] = summary
    if not validate.needs_teacher(run_cfg, method):
      # The teacher-free bar a distillation method must beat includes the plain
      # student with its logits prior-corrected after training (tau chosen on val).
      with open(os.path.join(student_dir(run_cfg), "final.json")) as f:
        post_hoc = json.load(f)["post_hoc"]
      rows.update(_post_hoc_row(student_row_name(cfg, method), post_hoc))
  table = metrics_lib.format_table(rows)
  plot = os.path.join(cfg.workdir, "per_class_accuracy.png")
  if distributed.is_primary():
    metrics_lib.plot_per_class(
        {name: row["per_class"] for name, row in rows.items()}, ds.train_counts, plot,
        title=f"{ds.name}: per-class test accuracy against training count")
  seconds = time.time() - start
  groups = ", ".join(f"{split}: {'/'.join(metrics_lib.profiles.GROUPS[split])}"
                     for split in metrics_lib.GROUP_SPLITS)
  report = (f"# {ds.name} demo\n\nTest accuracy (%), {len(ds.test_labels)} balanced test "
            f"images, {len(ds.train_labels)} long-tailed training images, "
            f"{mesh.devices.size} device(s), {seconds:.0f} s.\nGroups: {groups} "
            "(absolute: >100 / 20-100 / <20 training images; tercile: classes ranked by "
            "count).\n\n" + table + "\n")
  if distributed.is_primary():
    with open(os.path.join(cfg.workdir, "report.md"), "w") as f:
      f.write(report)
    with open(os.path.join(cfg.workdir, "report.json"), "w") as f:
      json.dump(rows, f)
  return {"table": table, "plot": plot, "rows": rows, "seconds": seconds}
