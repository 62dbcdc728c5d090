"""benchmarks/append_rows.py: a sweep's rows reach a raw file once each, with the knobs
that acted on their method, and a file of other columns is refused."""

import csv
import importlib.util
import pathlib
import types

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]


def _module(name):
  spec = importlib.util.spec_from_file_location(name, ROOT / "benchmarks" / f"{name}.py")
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def _sweep_rows():
  """Two cells of a grid over DKD's beta: KD's one run is reported in both."""
  rows = []
  for cell, beta in enumerate(("1", "8")):
    for method, run_dir in (("kd", "/w/kd_s0"), ("dkd", f"/w/dkd_s0_b{beta}")):
      rows.append({"cell": str(cell), "methods.dkd.beta": beta, "method": method,
                   "seed": "0", "status": "trained", "run_dir": run_dir, "balanced": "1.5"})
  return rows


def test_a_grids_shared_run_is_one_row_and_knobs_name_only_their_method(tmp_path):
  append_rows, readme_table = _module("append_rows"), _module("readme_table")
  raw = tmp_path / "raw.csv"
  rows = append_rows.converted(_sweep_rows(), "ce", "a machine", "a command", "2026-12-07")
  assert [(r["method"], r["knobs"]) for r in rows] == [("kd", ""), ("dkd", "beta=1"),
                                                       ("dkd", "beta=8")]
  assert append_rows.append(rows, str(raw)) == 3
  assert append_rows.append(rows, str(raw)) == 0  # appending again adds nothing
  with open(raw) as f:
    saved = list(csv.DictReader(f))
  assert [readme_table.row_name(r) for r in saved] == ["kd", "dkd (beta=1)", "dkd (beta=8)"]
  assert saved[1]["machine"] == "a machine" and saved[1]["balanced"] == "1.5"
  assert readme_table.title("krd (lrd_form=decoupled nckd_weight=4)") == \
      "KRDistill (decoupled, nckd_weight 4)"


def test_a_knob_set_on_the_command_line_names_its_row_as_a_grid_value_does():
  """`--config.methods.krd.lrd_form=relation` reaches results.csv as a column, so the
  raw row is not mistaken for KRDistill at its defaults."""
  from krd_jax import reports
  append_rows = _module("append_rows")
  runs = [types.SimpleNamespace(cell=0, overrides={"methods.dkd.beta": beta}, method=m,
                                seed=0, run_dir=f"/w/{m}_{beta}", teacher_dir="/w/t")
          for m, beta in (("krd", 1.0), ("dkd", 1.0), ("dkd", 8.0))]
  rows = reports.result_rows(runs, [("trained", None)] * 3, ["methods.dkd.beta"],
                             [("methods.krd.lrd_form", "relation"),
                              ("methods.dkd.beta", 2.0)])  # the grid's value wins
  assert [r["methods.dkd.beta"] for r in rows] == ["1.0", "1.0", "8.0"]
  converted = append_rows.converted(rows, "ce", "m", "c", "d")
  assert [(r["method"], r["knobs"]) for r in converted] == [
      ("krd", "lrd_form=relation"), ("dkd", "beta=1.0"), ("dkd", "beta=8.0")]


def test_a_form_named_at_its_default_is_the_default_run():
  """A grid over KRDistill's LRD forms writes "lrd_form=kl" on its KL row: that row is
  KRDistill at its defaults, named "krd" as a run of `--methods krd` alone is."""
  readme_table = _module("readme_table")
  assert readme_table.row_name({"method": "krd", "knobs": "lrd_form=kl"}) == "krd"
  assert readme_table.row_name({"method": "krd", "knobs": "lrd_form=relation"}) == \
      "krd (lrd_form=relation)"
  assert readme_table.row_name({"method": "krd", "knobs": "lrd_form=kl nckd_weight=8.0"}) \
      == "krd (nckd_weight=8.0)"
  assert readme_table.row_name({"method": "dkd", "knobs": "beta=8.0"}) == "dkd (beta=8.0)"


def test_no_shipped_recipe_changes_a_forms_registered_default():
  """row_name's rule holds only while every recipe leaves the string-valued knobs (the
  forms) at their registered defaults."""
  from krd_jax import configs
  from krd_jax import methods
  for name in configs.names():
    cfg = configs.get(name)
    for method in methods.names():
      for knob, param in methods.get(method).params.items():
        if isinstance(param.default, str) and method in cfg.methods and \
            knob in cfg.methods[method]:
          assert cfg.methods[method][knob] == param.default, (name, method, knob)


def test_a_raw_file_of_other_columns_is_refused(tmp_path):
  append_rows = _module("append_rows")
  raw = tmp_path / "raw.csv"
  raw.write_text("method,seed\nkd,0\n")
  rows = append_rows.converted(_sweep_rows(), "ce", "m", "c", "d")
  with pytest.raises(SystemExit, match="other columns"):
    append_rows.append(rows, str(raw))
  assert raw.read_text() == "method,seed\nkd,0\n"


def test_the_table_picks_one_setting_per_swept_number_within_each_form():
  table = _module("every_distiller_table")
  val = {"krd": 17.0, "krd (lrd_form=decoupled nckd_weight=2.0)": 20.9,
         "krd (lrd_form=decoupled nckd_weight=8.0)": 21.8,
         "krd (lrd_form=target nckd_weight=4.0)": 19.2,
         "krd (lrd_form=target nckd_weight=8.0)": 19.0,
         "dkd (beta=2.0)": 16.0, "dkd (beta=8.0)": 17.5, "kd": 30.0,
         "krd (lrd_form=relation)": 23.4}  # one setting: nothing was picked among others
  forms = {name: {"val": (v, 0.0)} for name, v in val.items()}
  assert table.picks(forms) == {"krd (lrd_form=decoupled nckd_weight=8.0)",
                                "krd (lrd_form=target nckd_weight=4.0)", "dkd (beta=8.0)"}


def test_the_table_picks_on_the_screen_seed_and_lists_screened_only_rows_last(
    tmp_path, monkeypatch):
  """Seed 0 swept DKD's beta; seed 1 ran seed 0's pick (beta 8). Over both seeds beta 8
  validates worse (15) than beta 4 did on seed 0 alone (18): the pick stays seed 0's."""
  table, readme_table = _module("every_distiller_table"), _module("readme_table")
  rows = [("dkd", "beta=8.0", "0", 20.0), ("dkd", "beta=8.0", "1", 10.0),
          ("dkd", "beta=4.0", "0", 18.0), ("kd", "", "0", 12.0), ("kd", "", "1", 12.0)]
  with open(tmp_path / table.RAW, "w", newline="") as f:
    writer = csv.DictWriter(f, ["teacher_loss", "method", "knobs", "seed", *(
        "val_balanced balanced many medium few post_hoc_tau post_hoc_val_balanced "
        "post_hoc_balanced").split()])
    writer.writeheader()
    for method, knobs, seed, val in rows:
      writer.writerow({"teacher_loss": "ce", "method": method, "knobs": knobs, "seed": seed,
                       "val_balanced": val, "balanced": val, "many": 0, "medium": 0,
                       "few": 0, "post_hoc_tau": 0, "post_hoc_val_balanced": val,
                       "post_hoc_balanced": val})
  monkeypatch.setattr(table.readme_table, "RESULTS", str(tmp_path))
  text, ordered = table.table()
  assert [name for name, _ in ordered] == ["dkd (beta=8.0)", "kd", "dkd (beta=4.0)"]
  assert "| DKD (beta 8.0) (val's pick) | 2 |" in text
  assert "| DKD (beta 4.0) | 1 | 18.0 | 18.0 |" in text  # one seed: no "± 0.0"
  assert "| KD | 2 | 12.0 ± 0.0 |" in text


def test_the_logit_adjusted_teachers_rows_are_their_own_table(tmp_path, monkeypatch):
  """One raw file holds both teachers' rows: each table holds its teacher's distillers
  and the teacher-free rows (the same in both), never the other teacher's."""
  table = _module("every_distiller_table")
  metrics = {k: "1" for k in ("val_balanced", "balanced", "many", "medium", "few",
                              "post_hoc_tau", "post_hoc_val_balanced", "post_hoc_balanced")}
  _write(tmp_path / table.RAW, [
      {"teacher_loss": t, "method": m, "knobs": "", "seed": "0", **metrics}
      for t, m in (("ce", "dkd"), ("ce", "kd"), ("ce", "ce"), ("ce", "balanced_softmax"),
                   ("logit_adjusted", "dkd"), ("logit_adjusted", "dist"))])
  monkeypatch.setattr(table.readme_table, "RESULTS", str(tmp_path))
  for teacher, expected in (("ce", {"dkd", "kd", "ce", "balanced_softmax"}),
                            ("logit_adjusted", {"dkd", "dist", "ce", "balanced_softmax"})):
    _, ordered = table.table(teacher)
    assert {name for name, _ in ordered} == expected
    assert all(r["teacher_loss"] in (teacher, "ce") for _, rows in ordered for r in rows)
    assert all(r["teacher_loss"] == teacher for name, rows in ordered
               if name not in ("ce", "balanced_softmax")
               for r in rows)


# Every metric column of a raw row the every-distiller table reads.
_METRICS = ("val_balanced balanced many medium few post_hoc_tau post_hoc_val_balanced "
            "post_hoc_balanced").split()


def test_a_table_still_running_sorts_its_first_seed_among_the_rest(tmp_path, monkeypatch):
  """The logit-adjusted teacher's rows arrive seed by seed beside teacher-free rows that
  have all three: a row on seed 0 alone that no sweep put beside another setting is not a
  screened-only setting, so validation places it, not its seed count."""
  table = _module("every_distiller_table")
  rows = [{"teacher_loss": t, "method": m, "knobs": k, "seed": str(seed),
           **dict.fromkeys(_METRICS, val)}
          for t, m, k, val, seeds in (("ce", "ce", "", 10.0, 3),
                                      ("logit_adjusted", "dist", "", 24.0, 1),
                                      ("logit_adjusted", "dkd", "beta=8.0", 22.0, 1))
          for seed in range(seeds)]
  _write(tmp_path / table.RAW, rows)
  monkeypatch.setattr(table.readme_table, "RESULTS", str(tmp_path))
  _, ordered = table.table("logit_adjusted")
  assert [name for name, _ in ordered] == ["dist", "dkd (beta=8.0)", "ce"]


def test_a_new_pick_on_the_screen_seed_alone_waits_below_the_three_seed_rows(tmp_path,
                                                                           monkeypatch):
  """The screen extended past its range (beta 16, seed 0) beats the old pick (beta 8, run
  on 3 seeds) on seed 0: 16 becomes validation's pick but, one seed so far, sorts with the
  screen's rows; 8 keeps its place among the 3-seed rows, no longer marked a pick."""
  table = _module("every_distiller_table")
  rows = [{"teacher_loss": "ce", "method": m, "knobs": k, "seed": str(seed),
           **dict.fromkeys(_METRICS, val)}
          for m, k, val, seeds in (("dkd", "beta=16.0", 23.0, 1), ("dkd", "beta=8.0", 22.0, 3),
                                   ("dkd", "beta=4.0", 21.0, 1), ("kd", "", 15.0, 3))
          for seed in range(seeds)]
  _write(tmp_path / table.RAW, rows)
  monkeypatch.setattr(table.readme_table, "RESULTS", str(tmp_path))
  text, ordered = table.table()
  assert [name for name, _ in ordered] == ["dkd (beta=8.0)", "kd", "dkd (beta=16.0)",
                                           "dkd (beta=4.0)"]
  assert "| DKD (beta 16.0) (val's pick) | 1 |" in text
  assert "| DKD (beta 8.0) | 3 |" in text


def _write(path, rows):
  with open(path, "w", newline="") as f:
    writer = csv.DictWriter(f, sorted({k for r in rows for k in r}))
    writer.writeheader()
    writer.writerows(rows)


def test_the_schedule_question_counts_each_run_once_and_keeps_forms_apart(tmp_path,
                                                                          monkeypatch):
  """KRDistill's KL rows of the every-distiller file are not added to the schedule's own,
  the screen's decoupled rows (their form in columns of their own) are not the KL, and
  settings outside the question (DKD at beta 1, KD) are left out."""
  schedule = _module("schedule_question")
  monkeypatch.setattr(schedule, "RESULTS", str(tmp_path))
  metrics = {"val_balanced": "1", "balanced": "1", "post_hoc_val_balanced": "1",
             "post_hoc_balanced": "1"}
  _write(tmp_path / "own.csv", [
      {"teacher_loss": "ce", "method": "krd", "seed": "0", **metrics},
      {"teacher_loss": "ce", "method": "dkd", "seed": "0", **metrics},
      {"teacher_loss": "logit_adjusted", "method": "krd", "seed": "0", **metrics}])
  _write(tmp_path / "every.csv", [
      {"teacher_loss": "ce", "method": m, "knobs": k, "seed": "0", **metrics}
      for m, k in (("krd", ""), ("krd", "lrd_form=relation"), ("dkd", "beta=8.0"),
                   ("dkd", "beta=1.0"), ("kd", ""))])
  _write(tmp_path / schedule.SCREEN, [
      {"config": c, "teacher_loss": "ce", "lrd_form": "decoupled", "nckd_weight": "2.0",
       "method": "krd", "seed": "0", **metrics} for c in ("this", "another")])
  found = schedule.rows({"own.csv": None, "every.csv": schedule.EVERY_DISTILLER_PICKS},
                        "this")
  assert {name: len(rows) for name, rows in found.items()} == {
      "krd": 1, "dkd": 1, schedule.RELATION: 1, "dkd (beta=8.0)": 1, schedule.DECOUPLED: 1}


def _readme_row(tmp_path, monkeypatch, runs):
  """README's table row of one raw file: runs are (method, knobs, value, seeds), seed s
  scoring value + s in every column."""
  readme_table = _module("readme_table")
  metrics = "val_balanced balanced post_hoc_val_balanced post_hoc_balanced".split()
  rows = [{"teacher_loss": "ce", "method": m, "knobs": k, "seed": str(seed),
           **{c: v + seed for c in metrics}}
          for m, k, v, seeds in runs for seed in range(seeds)]
  _write(tmp_path / "raw.csv", rows)
  monkeypatch.setattr(readme_table, "RESULTS", str(tmp_path))
  monkeypatch.setattr(readme_table, "ROWS", [("set", ("raw.csv",), "teacher_loss", "ce")])
  return readme_table.table().splitlines()[-1]


def test_readmes_bar_is_another_method_not_krdistill_in_another_form(tmp_path, monkeypatch):
  runs = (("krd", "", 20.0, 3), ("krd", "lrd_form=relation", 30.0, 3), ("dist", "", 25.0, 3))
  assert _readme_row(tmp_path, monkeypatch, runs) == (
      "| set | KRDistill 21.0 ± 1.0 (val 21.0) | DIST 26.0 ± 1.0 (val 26.0) "
      "| **behind** by 5.0 on validation; test -5.0 |")


def test_the_schedule_question_decides_at_the_longest_schedule_with_three_seeds():
  """A 32-epoch schedule with one seed committed is shown, not decided on: the verdicts
  stay at 16 epochs until its rows have three seeds; KRDistill's best form there on
  validation is the one held against the others."""
  schedule = _module("schedule_question")
  def series(name, val, seeds):
    method, knobs = schedule.readme_table.split_name(name)
    return [{"teacher_loss": "ce", "method": method, "knobs": knobs, "seed": str(s),
             "val_balanced": str(val + s), "balanced": str(val + s),
             "post_hoc_val_balanced": "0", "post_hoc_balanced": "0"} for s in range(seeds)]
  def schedule_of(relation, kl, dist, seeds):
    return {schedule.RELATION: series(schedule.RELATION, relation, seeds),
            "krd": series("krd", kl, seeds), "dist": series("dist", dist, seeds)}
  schedules = {("set", 16): schedule_of(30, 25, 20, 3), ("set", 32): schedule_of(10, 11, 40, 1)}
  lines = schedule.verdicts(schedules)
  assert [line.split(":")[0] for line in lines] == ["- set, 16 epochs"] * 2
  assert lines[0].startswith("- set, 16 epochs: KRDistill (relation) (n=3) against KRDistill "
                             "(KL) (n=3): ahead by 5.0")
  schedules["set", 32] = schedule_of(10, 45, 40, 3)
  lines = schedule.verdicts(schedules)
  assert lines[0].startswith("- set, 32 epochs: KRDistill (KL) (n=3) against DIST (n=3): "
                             "ahead by 5.0")


def test_a_comparison_short_of_three_seeds_gets_no_verdict_and_no_spread(tmp_path,
                                                                         monkeypatch):
  """A schedule with one seed committed shows its gap but calls it nothing: a single
  seed has no spread, so "± 0.0" and a lead would both be claims it cannot make."""
  runs = (("krd", "", 30.0, 1), ("dist", "", 25.0, 3))
  assert _readme_row(tmp_path, monkeypatch, runs) == (
      "| set | KRDistill 30.0 (1 seed) (val 30.0) | DIST 26.0 ± 1.0 (val 26.0) "
      "| none yet: 1 of 3 seeds (validation +4.0, test +4.0) |")
