"""Students of one seed trained as one cohort (the teacher run once per step) end where
each ends trained alone, to float32 rounding; the methods of one seed see the same
batches and views."""

import json
import os

import jax
import ml_collections
import numpy as np
import pytest

from krd_jax import runs
from krd_jax.experiment import Experiment
from krd_jax.train import checkpoints as ckpt_lib
from krd_jax.train import cohort as cohort_lib
from krd_jax.train import student as student_lib
from test_train import _config, _tiny_dataset


def _cfgs(tmp_path, methods, **config):
  base = ml_collections.ConfigDict(_config(tmp_path, **config).to_dict())
  base.methods.crd.negatives = 16  # K at the tiny set's size: the test is the state's road
  return [runs.with_method(base.lock(), m) for m in methods]


def _leaves(tree):
  return [np.asarray(x) for x in jax.tree_util.tree_leaves(jax.device_get(tree))]


def test_methods_of_one_seed_see_the_same_batches_and_views(tmp_path):
  """The contract a cohort rests on: data order and augmentation key come from the
  seed, not the method."""
  ds = _tiny_dataset()
  cfgs = _cfgs(tmp_path, ["ce", "logit_adjusted", "balanced_softmax"], model="mlp")
  setups = [student_lib.student_setup(c, ds, runs.make_mesh(c), None) for c in cfgs]
  for s in setups[1:]:
    np.testing.assert_array_equal(s.rng, setups[0].rng)
    for a, b in zip(s.loader.host_epoch(1), setups[0].loader.host_epoch(1)):
      np.testing.assert_array_equal(a["image"], b["image"])
      np.testing.assert_array_equal(a["label"], b["label"])
  other_seed = _config(tmp_path, model="mlp", method="ce").unlock()
  other_seed.seed = 1
  moved = student_lib.student_setup(other_seed.lock(), ds, runs.make_mesh(cfgs[0]), None)
  assert not np.array_equal(moved.rng, setups[0].rng)


@pytest.mark.parametrize("methods", [["kd", "logit_adjusted"], ["krd", "fitnet"],
                                     ["crd", "at"]],
                         ids=["logits", "features", "state-and-stages"])
def test_cohort_equals_each_student_trained_alone(tmp_path, methods):
  """A logit method beside a teacher-free one; KRDistill with RRD on (it reads the
  teacher's features and trains a projector) beside FitNet (features, a regressor); CRD
  (memory banks as method state, sample indices, a key) beside AT (both nets' stage
  maps, the teacher's collected once for the cohort)."""
  ds = _tiny_dataset()
  # _config turns RRD on; one epoch (two steps, a checkpoint between them) is enough to
  # carry CRD's banks and AT's maps through the cohort's road.
  cfgs = _cfgs(tmp_path / "cfg", methods, epochs=1 if "crd" in methods else 2)
  exp = Experiment(cfgs[0], teacher_dir=str(tmp_path / "teacher"), data=ds)
  alone = [exp.train_student(c, str(tmp_path / "alone" / m)) for c, m in zip(cfgs, methods)]
  together = exp.train_cohort(cfgs, [str(tmp_path / "together" / m) for m in methods],
                              str(tmp_path / "cohort"))
  assert not exp.teacher_trained or len(os.listdir(tmp_path / "teacher")) > 0
  saved = ckpt_lib.RunCheckpoints(str(tmp_path / "cohort" / "checkpoints"))
  cohort_params = saved.manager.restore(saved.latest_step)["state"]["params"]
  saved.close()
  for method, a, b in zip(methods, alone, together):
    solo = ckpt_lib.RunCheckpoints(str(tmp_path / "alone" / method / "checkpoints"))
    solo_params = solo.manager.restore(solo.latest_step)["state"]["params"]
    solo.close()
    assert set(solo_params) == set(cohort_params[method])  # "method" too, where owned
    # AT's weight of 1000 and CRD's exp(s / 0.07) magnify float32 reduction-order
    # differences between the two programs: a few 1e-6 after two epochs.
    atol = 2e-5 if method in ("crd", "at") else 1e-6
    for x, y in zip(_leaves(solo_params), _leaves(cohort_params[method])):
      np.testing.assert_allclose(x, y, rtol=1e-5, atol=atol, err_msg=method)
    if method == "crd":  # its banks went through the cohort's road too, and moved
      solo_state = ckpt_lib.RunCheckpoints(str(tmp_path / "alone" / method / "checkpoints"))
      banks = solo_state.manager.restore(solo_state.latest_step)["state"]["method_state"]
      solo_state.close()
      cohort_state = ckpt_lib.RunCheckpoints(str(tmp_path / "cohort" / "checkpoints"))
      cohort_banks = cohort_state.manager.restore(cohort_state.latest_step)["state"][
          "method_state"][method]
      cohort_state.close()
      assert float(banks["z_s"]) > 0
      for x, y in zip(_leaves(banks), _leaves(cohort_banks)):
        np.testing.assert_allclose(x, y, rtol=1e-5, atol=atol)
    np.testing.assert_allclose(a["per_class"], b["per_class"])
    with open(tmp_path / "alone" / method / "final.json") as f:
      solo_final = json.load(f)
    with open(tmp_path / "together" / method / "final.json") as f:
      cohort_final = json.load(f)
    assert cohort_final.pop("trained_in") == os.path.abspath(tmp_path / "cohort")
    assert cohort_final["method"] == method
    assert cohort_final["post_hoc"]["tau"] == solo_final["post_hoc"]["tau"]
    assert (tmp_path / "together" / method / "config.json").read_text() == (
        tmp_path / "alone" / method / "config.json").read_text()


def test_one_method_at_two_settings_trains_as_two_members(tmp_path):
  """A grid over a method's knob: KD at two temperatures in one cohort, each member
  (kd_1, kd_2) ending where it ends trained alone, and the two apart."""
  ds = _tiny_dataset()
  base = _config(tmp_path / "cfg", epochs=1, model="mlp")
  cfgs = []
  for temperature in (4.0, 1.0):
    cfg = ml_collections.ConfigDict(runs.with_method(base, "kd").to_dict())
    cfg.methods.kd.temperature = temperature
    cfgs.append(cfg.lock())
  assert cohort_lib.member_names([*cfgs, runs.with_method(base, "ce")]) == [
      "kd_1", "kd_2", "ce"]
  exp = Experiment(cfgs[0], teacher_dir=str(tmp_path / "teacher"), data=ds)
  alone = [exp.train_student(c, str(tmp_path / "alone" / str(i))) for i, c in enumerate(cfgs)]
  together = exp.train_cohort(cfgs, [str(tmp_path / "together" / str(i)) for i in range(2)],
                              str(tmp_path / "cohort"))
  for a, b in zip(alone, together):
    np.testing.assert_allclose(a["per_class"], b["per_class"])
  saved = ckpt_lib.RunCheckpoints(str(tmp_path / "cohort" / "checkpoints"))
  params = saved.manager.restore(saved.latest_step)["state"]["params"]
  saved.close()
  assert set(params) == {"kd_1", "kd_2"}
  assert any(not np.allclose(x, y) for x, y in zip(_leaves(params["kd_1"]),
                                                   _leaves(params["kd_2"])))
  for i, temperature in enumerate((4.0, 1.0)):
    written = json.loads((tmp_path / "together" / str(i) / "config.json").read_text())
    assert written["method_kwargs"]["temperature"] == temperature


def test_cohort_refuses_runs_that_differ_in_more_than_the_method(tmp_path):
  a, b = _cfgs(tmp_path, ["kd", "dkd"])
  other = ml_collections.ConfigDict(b.to_dict())
  other.student.epochs = 3
  with pytest.raises(ValueError, match=r"differ in \['student'\]"):
    cohort_lib.check_cohort([a, other.lock()])
  with pytest.raises(ValueError, match="repeated students"):
    cohort_lib.check_cohort([a, a])
  # Method knobs may differ: each student reads its own section.
  tuned = ml_collections.ConfigDict(b.to_dict())
  tuned.methods.kd.temperature = 2.0
  cohort_lib.check_cohort([a, tuned.lock()])


def test_a_cohort_too_large_for_the_device_trains_its_students_one_by_one(
    tmp_path, monkeypatch, capsys):
  """Bounded: where the compiled cohort step would not fit the device's memory (here a
  device said to hold 1 KiB), the sweep says so in one line and trains each student alone,
  online teacher and all; nothing of the cohort is written."""
  from krd_jax import ablate
  from test_ablate import _base
  monkeypatch.setattr(cohort_lib, "device_memory_limit", lambda mesh: 1024)
  workdir = tmp_path / "sweep"
  result = ablate.run_sweep(_base(), "", ["krd", "logit_adjusted"], [0], str(workdir))
  assert result["trained"] == 2 and not (workdir / "cohorts").exists()
  out = capsys.readouterr()
  assert "a cohort step needs" in out.out + out.err
  assert "more than 90% of its 0.00 GiB; its 2 students train one by one" in out.out + out.err
  for row in result["rows"]:
    assert "trained_in" not in json.loads(
        (tmp_path / "sweep" / "students" / os.path.basename(row["run_dir"]) /
         "final.json").read_text())


def test_a_cohort_too_large_is_split_in_two_before_its_students_go_alone(
    tmp_path, monkeypatch, capsys):
  """Bounded: a device that holds two students but not three (faked: check_fits refuses
  a step of more than two members) trains a cohort of three as one of two and one
  alone, not all three alone."""
  from krd_jax import ablate
  from test_ablate import _base
  real_check_fits = cohort_lib.check_fits

  def two_at_most(step_fn, state, *args, **kwargs):
    if len(state.params) > 2:
      raise cohort_lib.CohortTooLarge("a cohort step needs more than this device holds")
    return real_check_fits(step_fn, state, *args, **kwargs)

  monkeypatch.setattr(cohort_lib, "check_fits", two_at_most)
  workdir = tmp_path / "sweep"
  result = ablate.run_sweep(_base(epochs=1), "", ["krd", "kd", "logit_adjusted"], [0],
                            str(workdir))
  assert result["trained"] == 3
  out = capsys.readouterr()
  assert "its 3 students train as two cohorts, of 2 and 1" in out.out + out.err
  assert "one by one" not in out.out + out.err
  (cohort_dir,) = os.listdir(workdir / "cohorts")
  members = json.loads((workdir / "cohorts" / cohort_dir / "config.json").read_text())
  assert set(members["cohort"]) == {"krd", "kd"}


def test_demo_reads_back_only_runs_of_its_own_configuration(tmp_path, capsys):
  """The demo reuses a finished student of the same configuration; a student folder that
  holds another configuration's run is refused (exit 2, one line), never read back."""
  from krd_jax import __main__ as cli_lib
  args = ["krd_jax", "demo", "--config=digits_lt:local", f"--config.workdir={tmp_path}",
          "--config.progress=False", "--config.demo_methods=('ce','kd')"]
  assert cli_lib.cli(args) == 0
  first = (tmp_path / "report.json").read_text()
  assert cli_lib.cli(args) == 0 and (tmp_path / "report.json").read_text() == first
  capsys.readouterr()
  assert cli_lib.cli(args + ["--config.methods.kd.temperature=2.0"]) == \
      cli_lib.EXIT_BAD_INPUT
  assert "holds a run of another configuration" in capsys.readouterr().err
