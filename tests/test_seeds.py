"""Seeds in parallel (krd_jax.train.seeds): each seed equals the same seed trained alone."""

import json
import os
import shutil

import jax
import ml_collections
import numpy as np
import pytest

from krd_jax import runs
from krd_jax.train import checkpoints as ckpt_lib
from krd_jax.train import teacher as teacher_lib
from krd_jax.train import student as student_lib
from krd_jax.train import seeds as seeds_lib

from test_train import _config, _leaves, _tiny_dataset

SEEDS = (0, 1, 2)


def _with_seed(cfg, seed, **student):
  out = ml_collections.ConfigDict(cfg.to_dict())
  out.seed = seed
  out.student.update(student)
  return out.lock()


def _latest_params(run_dir):
  checkpoints = ckpt_lib.RunCheckpoints(os.path.join(run_dir, "checkpoints"))
  try:
    return jax.device_get(
        checkpoints.manager.restore(checkpoints.latest_step)["state"]["params"])
  finally:
    checkpoints.close()


@pytest.fixture(scope="module")
def trained_teacher(tmp_path_factory):
  tmp = tmp_path_factory.mktemp("teacher")
  ds = _tiny_dataset()
  cfg = _config(tmp, epochs=2, num_devices=4)
  mesh = runs.make_mesh(cfg)
  return ds, mesh, cfg, teacher_lib.train_teacher(cfg, ds, mesh, str(tmp / "teacher"))


@pytest.mark.parametrize("method", ["krd", "logit_adjusted"])
def test_each_seed_equals_the_seed_trained_alone(tmp_path, trained_teacher, method):
  ds, mesh, base, teacher = trained_teacher
  cfgs = [_with_seed(base, s, method=method) for s in SEEDS]
  run_dirs = [str(tmp_path / f"seed{s}") for s in SEEDS]
  parallel = seeds_lib.train_students_parallel(cfgs, ds, mesh, teacher, run_dirs,
                                               str(tmp_path / "group"))
  group_params = _latest_params(str(tmp_path / "group"))
  solo_params = []
  for i, cfg in enumerate(cfgs):
    solo = student_lib.train_student(cfg, ds, mesh, teacher, str(tmp_path / f"solo{i}"))
    np.testing.assert_allclose(parallel[i]["per_class"], solo["per_class"])
    solo_params.append(_latest_params(str(tmp_path / f"solo{i}")))
    for a, b in zip(_leaves(seeds_lib.unstack(group_params, i)), _leaves(solo_params[-1])):
      np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)
    final = json.loads((tmp_path / f"seed{cfg.seed}" / "final.json").read_text())
    # (json: NaN group accuracies, for groups without classes, compare equal as text)
    assert json.dumps(final["test"]) == json.dumps(parallel[i])
    assert final["trained_in"].endswith("group")
    # Post-hoc adjustment and fitted constants recorded as the solo run records them.
    solo_final = json.loads((tmp_path / f"solo{i}" / "final.json").read_text())
    assert final["post_hoc"]["tau"] == solo_final["post_hoc"]["tau"]
    assert final["post_hoc"]["chosen_on"] == solo_final["post_hoc"]["chosen_on"]
    np.testing.assert_allclose(final["post_hoc"]["test"]["per_class"],
                               solo_final["post_hoc"]["test"]["per_class"])
    assert final["fitted"] == solo_final["fitted"]
    # The seed's folder holds the config a solo run of that seed would have.
    assert json.loads((tmp_path / f"seed{cfg.seed}" / "config.json").read_text()) == \
        json.loads((tmp_path / f"solo{i}" / "config.json").read_text())
  # Seeds are different runs: initial parameters, data order and augmentation differ.
  first, second = _leaves(solo_params[0]), _leaves(solo_params[1])
  assert any(not np.allclose(a, b) for a, b in zip(first, second))


def test_interrupted_group_resumes_to_the_same_result(tmp_path, trained_teacher):
  ds, mesh, base, teacher = trained_teacher
  cfg = ml_collections.ConfigDict(base.to_dict())
  cfg.checkpoint_every_steps = 2
  cfgs = [_with_seed(cfg.lock(), s) for s in SEEDS[:2]]
  dirs = [str(tmp_path / f"s{s}") for s in SEEDS[:2]]
  group = tmp_path / "group"
  whole = seeds_lib.train_students_parallel(cfgs, ds, mesh, teacher, dirs, str(group))
  params = _leaves(_latest_params(str(group)))
  # An interruption after the step-2 checkpoint: later checkpoints and results never
  # happened.
  for name in os.listdir(group / "checkpoints"):
    if name.isdigit() and int(name) > 2:
      shutil.rmtree(group / "checkpoints" / name)
  for d in dirs:
    os.remove(os.path.join(d, "final.json"))
  resumed = seeds_lib.train_students_parallel(cfgs, ds, mesh, teacher, dirs, str(group))
  assert json.dumps(resumed) == json.dumps(whole)
  for a, b in zip(params, _leaves(_latest_params(str(group)))):
    assert a.tobytes() == b.tobytes()


def test_bad_groups_are_refused(tmp_path, trained_teacher):
  ds, mesh, base, teacher = trained_teacher
  ok = [_with_seed(base, s) for s in (0, 1)]

  def refused(cfgs, match, run_dirs=None):
    with pytest.raises(ValueError, match=match):
      seeds_lib.train_students_parallel(
          cfgs, ds, mesh, teacher, run_dirs or [str(tmp_path / str(i)) for i in range(len(cfgs))],
          str(tmp_path / "group"))
    assert not os.path.exists(tmp_path / "group")

  refused([ok[0], _with_seed(base, 0)], "repeated seeds")
  refused([ok[0], _with_seed(base, 1, epochs=3)], "differ in \\['student'\\]")
  randomized = ml_collections.ConfigDict(base.to_dict())
  randomized.methods.krd.update(anchor="random", use_rrd=True)
  refused([_with_seed(randomized.lock(), s) for s in (0, 1)], "anchor='random'")
  refused(ok, "2 configs but 1 run folders", run_dirs=[str(tmp_path / "x")])
  refused([], "no runs")


def test_sweeps_keep_convolutional_seeds_in_turn_on_cpu(tmp_path):
  """Measured on CPU: vmapped convolutions are slower than the seeds in turn."""
  from krd_jax import ablate
  cfg = _config(tmp_path, model="small_cnn")
  assert jax.default_backend() == "cpu" and not seeds_lib.pays_off(cfg.student.model)
  assert seeds_lib.pays_off(_config(tmp_path, model="mlp").student.model)
  runs_ = ablate.plan(cfg, [], ["krd"], [0, 1, 2], str(tmp_path / "w"))
  assert ablate.parallel_groups(runs_, 2) == []
  mlp_runs = ablate.plan(_config(tmp_path, model="mlp"), [], ["krd"], [0, 1, 2],
                         str(tmp_path / "w"))
  assert [[r.seed for r in g] for g in ablate.parallel_groups(mlp_runs, 2)] == [[0, 1]]
