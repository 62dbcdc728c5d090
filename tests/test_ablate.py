"""Ablation sweeps (krd_jax.ablate, run as experiments/ablate.py): grid parsing, one shared teacher, reports,
resume without retraining, and refusal of bad grids before anything is written."""

import csv
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from krd_jax import ablate, reports
from krd_jax.config import default_config

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _base(epochs=2, val_per_class=0):
  """digits_lt with tiny epochs: the sweep's cost is compilation, not training."""
  cfg = default_config().unlock()
  cfg.data.val_per_class = val_per_class
  cfg.progress = False
  cfg.num_devices = 1
  cfg.teacher.epochs = epochs
  cfg.student.epochs = epochs
  cfg.eval_every_epochs = epochs
  cfg.checkpoint_every_epochs = epochs
  return cfg.lock()


def _read_csv(path):
  with open(path, newline="") as f:
    return list(csv.DictReader(f))


def _final_mtimes(workdir):
  students = os.path.join(workdir, "students")
  return {d: os.stat(os.path.join(students, d, "final.json")).st_mtime_ns
          for d in os.listdir(students)}


def test_parse_grid_types_values_by_the_config_field():
  grid = ablate.parse_grid(
      "methods.krd.lam=0,0.25 methods.krd.swap=true,False student.epochs=3,5 "
      "methods.krd.anchor=aligned,random", _base())
  assert grid == [("methods.krd.lam", [0.0, 0.25]), ("methods.krd.swap", [True, False]),
                  ("student.epochs", [3, 5]), ("methods.krd.anchor", ["aligned", "random"])]
  assert isinstance(grid[0][1][0], float) and isinstance(grid[2][1][0], int)
  cells = ablate.cells(grid)
  assert len(cells) == 16
  assert cells[0] == {"methods.krd.lam": 0.0, "methods.krd.swap": True,
                      "student.epochs": 3, "methods.krd.anchor": "aligned"}
  assert ablate.cells([]) == [{}]


@pytest.mark.parametrize("spec, message", [
    ("methods.krd.lamb=0,1", "unknown config key config.methods.krd.lamb (did you mean "
     "methods.krd.lam?); allowed keys under config.methods.krd: alpha, anchor"),
    ("dta.imbalance=10", "unknown config key config.dta.imbalance (did you mean data?); "
     "allowed keys under config: "),
    ("student.epochs.x=1", "allowed keys under config.student.epochs: none (it is a value"),
    ("data.imbalance=10,many", "'many' is not of type float"),
    ("methods.krd.swap=true,maybe", "'maybe' is not of type bool"),
    ("student.epochs=2.5", "'2.5' is not of type int"),
    ("student.optim=1", "is a section"),
    ("seed=1,2", "use --seeds"),
    ("methods.krd.lam", "not of the form key=value1,value2"),
    ("methods.krd.lam=0.5,2", "config.methods.krd.lam=2.0 is not allowed; allowed: a number "
     ">= 0 and <= 1"),
    # A knob the resolved config leaves without effect (RRD off by default).
    ("methods.krd.lam=0,0.5", "config.methods.krd.lam=0.0 has no effect in this run: it "
     "acts only with methods.krd.use_rrd=True"),
    # With RRD on it acts; the bad value is still refused.
    ("methods.krd.use_rrd=true methods.krd.lam=0.5,2", "config.methods.krd.lam=2.0 is not "
     "allowed"),
    ("methods.dkd.beta=1,2", "grid key 'methods.dkd.beta' has no effect: no dkd run is in "
     "the sweep (--methods krd,kd); add dkd to --methods"),
    ("methods.krd.anchor=aligned,rnd", "allowed: one of aligned, random"),
])
def test_bad_grid_is_refused_before_anything_is_written(tmp_path, spec, message):
  workdir = tmp_path / "sweep"
  with pytest.raises(ValueError) as error:
    ablate.run_sweep(_base(), spec, ["krd", "kd"], [0], str(workdir))
  assert message in str(error.value)
  assert not workdir.exists()


def test_tau_is_refused_where_a_fitted_tau_replaces_it(tmp_path):
  """krd's tau_from='auto' fits tau on a validation split: sweeping tau there trains
  identical runs, so it is refused; without a split (or with tau_from='fixed') it acts."""
  with pytest.raises(ValueError, match=r"methods\.krd\.tau=0\.5 has no effect in this run: "
                     r"it acts only with methods\.krd\.tau_from='fixed' \(with "
                     r"tau_from='auto' the tau fitted"):
    ablate.run_sweep(_base(val_per_class=10), "methods.krd.tau=0.5,1", ["krd"], [0],
                     str(tmp_path / "w"))
  assert not (tmp_path / "w").exists()
  for base, grid in ((_base(), "methods.krd.tau=0.5,1"),
                     (_base(val_per_class=10), "methods.krd.tau_from=fixed "
                      "methods.krd.tau=0.5,1")):
    runs = ablate.plan(base, ablate.parse_grid(grid, base), ["krd"], [0], str(tmp_path))
    assert len({r.run_dir for r in runs}) == 2  # two distinct runs, no refusal


def test_unknown_method_is_refused(tmp_path):
  with pytest.raises(ValueError, match="unknown student method.*'krdd'"):
    ablate.run_sweep(_base(), "methods.krd.lam=0", ["krdd"], [0], str(tmp_path / "w"))
  assert not (tmp_path / "w").exists()


def test_cli_refuses_a_typo_with_the_valid_keys(tmp_path):
  workdir = tmp_path / "sweep"
  proc = subprocess.run(
      [sys.executable, os.path.join(REPO, "experiments", "ablate.py"),
       "--grid", "methods.krd.lamda=0,1", "--methods", "krd", f"--workdir={workdir}"],
      capture_output=True, text=True, timeout=120, cwd=REPO)
  assert proc.returncode != 0
  assert ("unknown config key config.methods.krd.lamda (did you mean methods.krd.lam?); "
          "allowed keys under config.methods.krd:") in proc.stderr
  assert not workdir.exists()


def test_cli_refuses_an_override_that_does_not_act_with_exit_2(tmp_path):
  workdir = tmp_path / "sweep"
  proc = subprocess.run(
      [sys.executable, os.path.join(REPO, "experiments", "ablate.py"),
       "--config.methods.krd.alpha=2.0", "--grid", "methods.krd.beta=0.5,1", "--methods",
       "krd", f"--workdir={workdir}"],
      capture_output=True, text=True, timeout=120, cwd=REPO)
  assert proc.returncode == 2
  assert proc.stderr.strip().splitlines() == [
      "error: cell {'methods.krd.beta': 0.5}, method krd: config.methods.krd.alpha=2.0 has "
      "no effect in this run: it acts only with methods.krd.use_rrd=True"]
  assert not workdir.exists()


def test_cli_takes_the_dashed_parallel_seeds_flag(tmp_path):
  workdir = tmp_path / "sweep"
  proc = subprocess.run(
      [sys.executable, os.path.join(REPO, "experiments", "ablate.py"),
       "--parallel-seeds", "0", f"--workdir={workdir}"],
      capture_output=True, text=True, timeout=120, cwd=REPO)
  assert proc.returncode != 0
  assert "--parallel-seeds=0; allowed: 1 or more" in proc.stderr
  assert not workdir.exists()


def test_sweep_shares_the_teacher_writes_reports_and_resumes(tmp_path, capsys):
  workdir, out = str(tmp_path / "sweep"), str(tmp_path / "reports")
  args = (_base(val_per_class=10), "methods.krd.beta=0.5,1", ["krd", "kd"], [0, 1],
          workdir, out)
  first = ablate.run_sweep(*args)

  # 2 cells x 2 methods x 2 seeds; kd does not read methods.krd.beta, so its two
  # cells share runs: 4 krd + 2 kd trained. One teacher for all of them.
  assert first["teachers_trained"] == 1
  assert len(os.listdir(os.path.join(workdir, "teachers"))) == 1
  assert first["trained"] == 6
  assert len(os.listdir(os.path.join(workdir, "students"))) == 6
  # Each seed's three students (krd at both betas, from both cells, and kd) trained as
  # one cohort: one teacher pass per step.
  cohort_dirs = sorted(os.listdir(os.path.join(workdir, "cohorts")))
  assert [d[:3] for d in cohort_dirs] == ["s0_", "s1_"]
  for d in cohort_dirs:
    with open(os.path.join(workdir, "cohorts", d, "config.json")) as f:
      members = json.load(f)["cohort"]
    assert set(members) == {"krd_1", "krd_2", "kd"}
    assert {members["krd_1"]["beta"], members["krd_2"]["beta"]} == {0.5, 1.0}

  results = _read_csv(os.path.join(out, "results.csv"))
  assert len(results) == 8
  assert {(r["methods.krd.beta"], r["method"], r["seed"]) for r in results} == {
      (beta, m, s) for beta in ("0.5", "1.0") for m in ("krd", "kd") for s in ("0", "1")}
  assert all(0.0 <= float(r["balanced"]) <= 100.0 for r in results)
  summary = _read_csv(os.path.join(out, "summary.csv"))
  assert len(summary) == 4 and all(r["seeds"] == "2" for r in summary)
  for column in ablate.METRICS:
    assert column in summary[0] and f"{column}_std" in summary[0]
  with open(os.path.join(out, "summary.md")) as f:
    table = f.read()
  # Two tables (test; what to choose on): a row per cell for KRDistill in each, one for
  # KD (its one run per seed, which both cells share, is not named by KRDistill's beta).
  assert table.count("| KRDistill (krd) beta=") == 4 and table.count("| KD |") == 2
  assert "±" in table
  assert os.path.getsize(os.path.join(out, "balanced_vs_methods_krd_beta.png")) > 1000
  # What defaults are chosen on: balanced val accuracy and each student's post-hoc
  # logit adjustment (tau from the val split), per run and in the summary.
  for row in results:
    assert 0.0 <= float(row["val_balanced"]) <= 100.0
    assert 0.0 <= float(row["post_hoc_tau"]) <= 2.0
    assert 0.0 <= float(row["post_hoc_balanced"]) <= 100.0
  assert "Choose on these" in table and "post_hoc_val_balanced" in table
  # krd's tau_from="auto" fitted tau on the val split and says so in final.json.
  krd_dir = next(r["run_dir"] for r in results if r["method"] == "krd")
  with open(os.path.join(krd_dir, "final.json")) as f:
    assert 0.0 <= json.load(f)["fitted"]["fitted_tau"] <= 2.0

  # Run again: every run is finished, nothing trains and no final.json is rewritten.
  # With progress on (it is not part of a run's identity), one line per run says so.
  mtimes = _final_mtimes(workdir)
  chatty = _base(val_per_class=10).unlock()
  chatty.progress = True
  capsys.readouterr()
  again = ablate.run_sweep(chatty.lock(), *args[1:])
  lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("[")]
  assert len(lines) == 8
  assert lines[0].startswith("[1/8] KRDistill (krd) seed 0, methods.krd.beta=0.5: balanced ")
  assert lines[-1].startswith("[8/8] KD seed 1, methods.krd.beta=1.0: balanced ")
  assert all(line.endswith("(reused)") for line in lines)
  assert again["trained"] == 0 and again["teachers_trained"] == 0
  assert _final_mtimes(workdir) == mtimes
  assert [r["balanced"] for r in again["rows"]] == [r["balanced"] for r in first["rows"]]

  # An unfinished run (no final.json, checkpoints present) resumes: only it runs,
  # the teacher comes from disk.
  victim = first["rows"][0]["run_dir"]
  os.remove(os.path.join(victim, "final.json"))
  del mtimes[os.path.basename(victim)]
  resumed = ablate.run_sweep(*args)
  assert resumed["trained"] == 1 and resumed["teachers_trained"] == 0
  assert {k: v for k, v in _final_mtimes(workdir).items() if k in mtimes} == mtimes
  assert resumed["rows"][0]["balanced"] == pytest.approx(first["rows"][0]["balanced"])


def test_parallel_seeds_sweep_equals_the_sweep_in_turn(tmp_path):
  # One cell (runs shared between cells are the in-turn test's; the parallel path asks
  # the same `seen` table), a method with a teacher and one without.
  args = (_base(), "", ["krd", "logit_adjusted"], [0, 1, 2])
  in_turn = ablate.run_sweep(*args, str(tmp_path / "turn"))
  parallel = ablate.run_sweep(*args, str(tmp_path / "par"), parallel_seeds=2)
  # Seeds 0,1 as a group, seed 2 alone, per method.
  groups = sorted(os.listdir(tmp_path / "par" / "parallel"))
  assert len(groups) == 2 and all("_s0-1_" in g for g in groups)
  assert parallel["trained"] == in_turn["trained"] == 6
  for a, b in zip(in_turn["rows"], parallel["rows"]):
    assert (a["method"], a["seed"]) == (b["method"], b["seed"])
    # The post-hoc column too: seeds trained together record it like solo runs.
    for metric in ("overall", "balanced", "head", "tail", "post_hoc_balanced"):
      assert a[metric] == pytest.approx(b[metric], abs=1e-9), (a, b)
  # Without a grid: the per-class plot of every method and the teacher.
  assert os.path.getsize(parallel["files"]["per_class_plot"]) > 1000
  again = ablate.run_sweep(*args, str(tmp_path / "par"), parallel_seeds=2)
  assert again["trained"] == 0


def test_parallel_seeds_must_be_positive(tmp_path):
  with pytest.raises(ValueError, match="parallel-seeds"):
    ablate.run_sweep(_base(), "", ["krd"], [0], str(tmp_path / "w"), parallel_seeds=0)
  assert not os.path.exists(tmp_path / "w")


def test_one_seed_has_no_spread_and_says_none():
  """A single seed's std is not 0 (nothing was measured): NaN in summary.csv, and the
  table prints the mean alone."""
  rows = [{"cell": 0, "method": "kd", "seed": 0, "status": "trained",
           **{m: 50.0 + i for i, m in enumerate(ablate.METRICS)}},
          {"cell": 0, "method": "krd", "seed": 0, "status": "trained",
           **{m: 60.0 for m in ablate.METRICS}},
          {"cell": 0, "method": "krd", "seed": 1, "status": "trained",
           **{m: 62.0 for m in ablate.METRICS}}]
  summary = ablate.aggregate(rows, [])
  kd, krd = (next(e for e in summary if e["method"] == m) for m in ("kd", "krd"))
  assert kd["balanced"] == 51.0 and kd["balanced_std"] != kd["balanced_std"]  # NaN
  assert krd["balanced_std"] == pytest.approx(2 ** 0.5)
  table = ablate.summary_markdown(summary, [], [], [0, 1], {})
  assert "| KD | 50.0 | 51.0 |" in table
  assert "| KRDistill (krd) | 61.0 ± 1.4 | 61.0 ± 1.4 |" in table
  assert "overridden" not in table
  # A row's name does not show what the command line changed for every run: the
  # table's head does.
  table = ablate.summary_markdown(summary, [], [], [0, 1], {}, [
      ("methods.krd.lrd_form", "decoupled"), ("methods.krd.nckd_weight", 2.0)])
  assert ("Base config overridden for every run: `methods.krd.lrd_form=decoupled`, "
          "`methods.krd.nckd_weight=2.0`\n") in table


def test_sweep_refuses_an_override_that_does_not_act_before_any_write(tmp_path):
  with pytest.raises(ValueError, match="methods.krd.alpha=.* has no effect"):
    ablate.run_sweep(_base(), "", ["krd"], [0], str(tmp_path / "w"),
                     overridden=["methods.krd.alpha"])
  assert not os.path.exists(tmp_path / "w")


def test_a_sweep_given_its_dataset_trains_on_it_and_refuses_to_vary_data(tmp_path):
  """run_sweep(data=...) (a saved dataset where the source cannot be read, e.g. a GPU
  machine without TensorFlow): teacher and students train on the given arrays."""
  from krd_jax import data as data_lib
  rng = np.random.default_rng(0)
  counts = np.array([40, 20, 10, 6, 4, 3, 2, 2, 2, 2])  # not digits_lt's 100 ... 2
  labels = np.repeat(np.arange(10), counts).astype(np.int32)
  test_labels = np.repeat(np.arange(10), 3).astype(np.int32)
  image = lambda n: rng.integers(0, 256, (n, 8, 8, 1), dtype=np.uint8)
  given = data_lib.from_arrays("given", image(len(labels)), labels, image(30), test_labels)
  assert given.train_counts.tolist() == counts.tolist()
  workdir = tmp_path / "sweep"
  with pytest.raises(ValueError, match=r"cannot vary data\.\*: \['data.imbalance'\]"):
    ablate.run_sweep(_base(), "data.imbalance=10,50", ["kd"], [0], str(workdir), data=given)
  assert not workdir.exists()
  result = ablate.run_sweep(_base(), "", ["kd"], [0], str(workdir), data=given)
  assert result["teachers_trained"] == 1 and result["trained"] == 1
  (teacher,) = os.listdir(workdir / "teachers")
  with open(workdir / "teachers" / teacher / "teacher.json") as f:
    assert json.load(f)["train_counts"] == counts.tolist()


def test_each_cohort_is_reported_as_it_ends(tmp_path, monkeypatch, capsys):
  """A long sweep says what finished when it finishes: one seed's cohort lines (and the
  bar) come before the next seed's cohort starts, not after the whole cell."""
  from krd_jax.ablate import planning
  from krd_jax.ablate import sweep
  chatty = _base().unlock()
  chatty.progress = True
  all_runs = planning.plan(chatty.lock(), [], ["krd", "kd"], [0, 1], str(tmp_path))
  final = {"test": {"balanced": 50.0, "tail": 10.0}}

  def fake_cohort(group, experiments, workdir):
    print(f"cohort of seed {group[0].seed} starts")
    return [("trained", final)] * len(group)

  monkeypatch.setattr(sweep, "execute_cohort", fake_cohort)
  capsys.readouterr()
  outcomes = sweep._train_all(all_runs, None, str(tmp_path), parallel_seeds=1,
                              share_teacher=True, progress=True)
  lines = [line for line in capsys.readouterr().out.splitlines()
           if line.startswith(("[", "cohort"))]
  assert [line.split(":")[0] for line in lines] == [
      "cohort of seed 0 starts", "[1/4] KRDistill (krd) seed 0, base config",
      "[2/4] KD seed 0, base config",
      "cohort of seed 1 starts", "[3/4] KRDistill (krd) seed 1, base config",
      "[4/4] KD seed 1, base config"]
  assert outcomes == [("trained", final)] * 4


def test_methods_all_is_every_method_the_models_can_run():
  from krd_jax import methods as methods_lib
  from krd_jax.ablate.planning import every_method
  chosen, left_out = every_method(_base())  # MLP student and teacher: no stage maps
  assert sorted(left_out) == ["at", "fitnet", "reviewkd"]
  assert "config.student.model='mlp' offers none" in left_out["fitnet"]
  assert sorted(chosen + list(left_out)) == methods_lib.names()
  conv = _base().unlock()
  conv.student.model = conv.teacher.model = "resnet8"
  assert every_method(conv.lock()) == (methods_lib.names(), {})


def test_a_row_names_only_the_swept_knobs_that_act_on_its_method():
  """A grid over KRDistill's form: DIST's one run is reported in both cells; its row is
  "DIST" once, not "DIST lrd_form=..." twice, and the validation table keeps each row's
  own numbers."""
  keys = ["methods.krd.lrd_form", "methods.dkd.beta"]
  rows = []
  for cell, form in enumerate(("kl", "relation")):
    for method, value in (("krd", 60.0 + cell), ("dist", 50.0), ("dkd", 40.0)):
      rows.append({"cell": cell, "methods.krd.lrd_form": form, "methods.dkd.beta": 8.0,
                   "method": method, "seed": 0, "status": "trained",
                   **{m: value for m in (*ablate.METRICS, *reports.SELECTION)}})
  table = ablate.summary_markdown(ablate.aggregate(rows, keys), keys, [], [0], {})
  lines = table.splitlines()
  assert [line.split(" |")[0] for line in lines if line.startswith("| DIST")] == ["| DIST"] * 2
  assert "| KRDistill (krd) lrd_form=relation | 61.0 |" in table
  assert "| KRDistill (krd) lrd_form=kl | 60.0 |" in table
  assert "| DKD beta=8.0 | 40.0 |" in table
  selection = table.split("Choose on these")[1]
  assert "| KRDistill (krd) lrd_form=relation | 61.0 | 61.00 | 61.0 | 61.0 |" in selection
  assert selection.count("| DIST | 50.0 |") == 1
