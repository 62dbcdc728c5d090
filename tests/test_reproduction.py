"""benchmarks/cifar100_lt_reproduction.py, the GPU run we owe, checked where it costs no
training: what it would train (its plan) and the table it prints from a summary.csv."""

import csv
import importlib.util
import pathlib

from krd_jax.ablate import planning
from krd_jax.ablate import sweep
from krd_jax.ablate.grid import parse_grid

ROOT = pathlib.Path(__file__).resolve().parents[1]


def _reproduction():
  spec = importlib.util.spec_from_file_location(
      "cifar100_lt_reproduction", ROOT / "benchmarks" / "cifar100_lt_reproduction.py")
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def test_the_published_pair_trains_every_distiller_per_teacher_in_one_cohort(tmp_path):
  """Both teacher kinds x both LRD forms x the sixteen methods is 64 planned runs but 32
  students: the methods that do not read lrd_form are one run in both of a teacher's
  cells, the teacher-free ones (CE, logit-adjusted CE) one run in all four; each
  teacher's students form one cohort (one teacher pass per step), the teacher-free
  ones in the first, each run in one cohort only."""
  repro = _reproduction()
  base = repro.base_config(str(tmp_path), 200, None, "float32")
  assert (base.teacher.model, base.student.model) == ("resnet32x4", "resnet8x4")
  runs = planning.plan(base, parse_grid(repro.grid("ce,la"), base), repro.METHODS, [0],
                       str(tmp_path))
  assert len(runs) == 64 and len({r.run_dir for r in runs}) == 32
  groups = sweep.cohorts(runs)
  assert [len(g) for g in groups] == [17, 15]
  assert len({r.run_dir for g in groups for r in g}) == 32
  for group in groups:
    assert len({r.teacher_dir for r in group if r.teacher_dir}) == 1
    krd = [r.cfg.methods.krd for r in group if r.method == "krd"]
    assert sorted(k.lrd_form for k in krd) == ["decoupled", "kl"]
    assert {k.nckd_weight for k in krd} == {base.methods.dkd.beta} == {8.0}


def _write_summary(path, rows):
  fields = ["teacher.loss", "methods.krd.lrd_form", "method", "seeds", "balanced",
            "balanced_std", "few", "few_std", "post_hoc_balanced", "post_hoc_balanced_std"]
  with open(path, "w", newline="") as f:
    writer = csv.DictWriter(f, fields)
    writer.writeheader()
    for loss, form, method, balanced in rows:
      writer.writerow({"teacher.loss": loss, "methods.krd.lrd_form": form, "method": method,
                       "seeds": 1, "balanced": balanced, "balanced_std": "", "few": 10.0,
                       "few_std": "", "post_hoc_balanced": balanced + 1,
                       "post_hoc_balanced_std": ""})


def test_table_has_one_row_per_student_and_published_numbers_only_where_published(
    tmp_path, capsys):
  summary = tmp_path / "summary.csv"
  _write_summary(summary, [("ce", "kl", "kd", 40.0), ("ce", "decoupled", "kd", 40.0),
                           ("ce", "kl", "krd", 44.0), ("ce", "decoupled", "krd", 45.0),
                           ("logit_adjusted", "kl", "kd", 41.0),
                           ("logit_adjusted", "decoupled", "kd", 41.0)])
  _reproduction().summarize(str(summary))
  rows = [line for line in capsys.readouterr().out.splitlines()
          if line.startswith("| ") and not line.startswith("| student")]
  cells = [[c.strip() for c in line.strip("|").split("|")] for line in rows]
  assert [(c[0], c[1], c[3], c[6]) for c in cells] == [
      ("kd", "ce", "40.00", "42.48"),  # the LTKD paper's KD, CE teacher
      ("krd (LRD kl)", "ce", "44.00", ""),
      ("krd (LRD decoupled)", "ce", "45.00", ""),
      ("kd", "logit_adjusted", "41.00", ""),  # published for the CE teacher only
  ]
