"""The method registry: each layer asks a method, so a new method is one module.

A toy method registered here, and nowhere else, goes through the config defaults,
validation (bad values refused with exit 2 and nothing written), the CLI, the
teacher, its per-run constants, a vmapped seed group and the ablation runner.
"""

import json
import os

import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from krd_jax import __main__ as cli_lib
from krd_jax import config as config_lib
from krd_jax import methods
from krd_jax import validate
from krd_jax.experiment import Experiment
from krd_jax.losses import long_tail
from krd_jax.methods import base

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIG = "digits_lt:local"
FAST = ("--config.progress=False", "--config.teacher.epochs=1", "--config.student.epochs=1",
        "--config.eval_every_epochs=1", "--config.checkpoint_every_epochs=1")


def _toy_build(counts, weight, anchor_scale=None):
  """CE + weight * anchor_scale * mean squared logit gap to the teacher."""
  ce_fn = base.student_ce(counts)

  def fn(out, distill_scale):
    gap = jnp.mean((out.student_logits - base.need(out, "teacher_logits")) ** 2)
    return base.total(ce_fn(out), {"gap": weight * anchor_scale * gap}, distill_scale)

  return base.StudentObjective(fn, needs_teacher=True)


def _toy_constants(hparams, context):
  # Reads the teacher's class means, as KRDistill's anchors do.
  means = context.class_means()
  assert means.shape[0] == context.num_classes
  return {"anchor_scale": float(1.0 / (1.0 + np.linalg.norm(means, axis=1).mean()))}


TOY = base.Method(
    name="toy_gap", title="Toy gap", build=_toy_build, constants=_toy_constants,
    params={"weight": base.Param(0.5, "gap weight", low=0.0, high=1.0)},
    uses_teacher=lambda hp: hp["weight"] > 0)


@pytest.fixture
def toy():
  methods.register(TOY)
  yield TOY
  methods.unregister(TOY.name)


def test_registered_method_appears_in_the_config_and_leaves_with_it(toy):
  assert config_lib.default_config().methods.toy_gap.weight == 0.5
  methods.unregister(toy.name)
  assert "toy_gap" not in config_lib.default_config().methods
  methods.register(toy)


def test_method_checks_its_own_values(toy):
  with pytest.raises(validate.InputError, match=r"config\.methods\.toy_gap\.weight=2\.0 is "
                     r"not allowed; allowed: a number >= 0 and <= 1"):
    toy.check({"weight": 2.0})
  with pytest.raises(validate.InputError, match="keys of methods.toy_gap: weight"):
    toy.check({"wieght": 0.1})
  assert toy.needs_teacher({}) and not toy.needs_teacher({"weight": 0.0})
  with pytest.raises(ValueError, match="already registered"):
    methods.register(toy)


def test_objective_golden(toy):
  counts = np.array([6, 3, 1])
  rng = np.random.default_rng(0)
  s, t = rng.normal(size=(5, 3)), rng.normal(size=(5, 3))
  y = np.array([0, 1, 2, 0, 1])
  objective = methods.objective("toy_gap", counts, weight=0.4, anchor_scale=0.5)
  loss, metrics = objective.fn(methods.StudentOutputs(
      student_logits=jnp.asarray(s, jnp.float32), teacher_logits=jnp.asarray(t, jnp.float32),
      labels=jnp.asarray(y)), 0.5)
  log_softmax = s - np.log(np.exp(s).sum(1, keepdims=True))
  ce = -np.mean(log_softmax[np.arange(5), y])
  np.testing.assert_allclose(loss, ce + 0.5 * 0.4 * 0.5 * np.mean((s - t) ** 2), rtol=1e-5)
  np.testing.assert_allclose(metrics["ce"], long_tail.cross_entropy(s, y).mean(), rtol=1e-5)


def test_toy_method_runs_through_the_cli_and_a_seed_group(toy, tmp_path, capsys):
  workdir = tmp_path / "w"
  rc = cli_lib.cli(["krd_jax", "student", f"--config={CONFIG}", f"--config.workdir={workdir}",
                    "--config.student.method=toy_gap", "--config.methods.toy_gap.weight=3.0",
                    *FAST])
  assert rc == cli_lib.EXIT_BAD_INPUT
  assert "config.methods.toy_gap.weight=3.0" in capsys.readouterr().err
  assert not workdir.exists()

  rc = cli_lib.cli(["krd_jax", "student", f"--config={CONFIG}", f"--config.workdir={workdir}",
                    "--config.student.method=toy_gap", "--config.methods.toy_gap.weight=0.25",
                    *FAST])
  assert rc == 0, capsys.readouterr().err
  final = json.loads((workdir / "students" / "toy_gap" / "final.json").read_text())
  assert final["method"] == "toy_gap" and 0 <= final["test"]["balanced"] <= 100
  saved = json.loads((workdir / "students" / "toy_gap" / "config.json").read_text())
  assert saved["method_kwargs"] == {"weight": 0.25}
  assert (workdir / "teacher" / "teacher.json").exists()  # it asked for a teacher

  # A seed group of the toy method, through the ablation runner's planning and the
  # vmapped group trainer.
  from krd_jax.train import seeds as seeds_lib
  base_cfg = ml_collections.ConfigDict(
      cli_lib.parse(["krd_jax", "student", f"--config={CONFIG}", f"--config.workdir={workdir}",
                     "--config.student.method=toy_gap", *FAST])[1].to_dict())
  cfgs = []
  for seed in (0, 1):
    cfg = ml_collections.ConfigDict(base_cfg.to_dict())
    cfg.seed = seed
    cfgs.append(cfg.lock())
  assert seeds_lib.seed_dependence("toy_gap", cfgs[0].methods.toy_gap.to_dict()) is None
  # The ablation runner sweeps the toy's own key, and refuses a value it does not allow.
  from krd_jax import ablate
  planned = ablate.plan(cfgs[0], ablate.parse_grid("methods.toy_gap.weight=0,0.5", cfgs[0]),
                        ["toy_gap"], [0], str(tmp_path / "sweep"))
  assert [r.teacher_dir is None for r in planned] == [True, False]  # weight 0: no teacher
  with pytest.raises(ValueError, match=r"methods\.toy_gap\.weight=2\.0 is not allowed"):
    ablate.plan(cfgs[0], ablate.parse_grid("methods.toy_gap.weight=2", cfgs[0]),
                ["toy_gap"], [0], str(tmp_path / "sweep"))
  # Seeds in parallel through the experiment, which loads the teacher trained above.
  exp = Experiment(cfgs[0])
  summaries = exp.train_students_parallel(
      cfgs, [str(tmp_path / f"s{s}") for s in (0, 1)], str(tmp_path / "group"))
  assert not exp.teacher_trained
  assert len(summaries) == 2 and all((tmp_path / f"s{s}" / "final.json").exists()
                                     for s in (0, 1))


def _run_from_before(tmp_path, method: str, knob: str):
  """(the config.json a `method` run writes now, the one it wrote before `knob` existed),
  the latter saved in tmp_path/run."""
  import ml_collections as mlc
  from krd_jax.train import run_dir as run_dir_lib
  cfg = mlc.ConfigDict(config_lib.default_config().to_dict())
  cfg.student.method = method
  current = run_dir_lib.role_json(cfg.lock(), "student")
  old = json.loads(json.dumps(current))
  del old["method_kwargs"][knob]
  (tmp_path / "run").mkdir()
  (tmp_path / "run" / "config.json").write_text(json.dumps(old))
  return current, old


def test_a_run_from_before_a_new_parameter_is_the_same_run(tmp_path):
  """A run folder written before a method gained a hyper-parameter resumes if the new
  one holds its default, and is refused (one line, nothing written) otherwise."""
  from krd_jax.train import run_dir as run_dir_lib
  current, old = _run_from_before(tmp_path, "bkd", "weights_from_epoch")
  run_dir_lib.check_run_dir(str(tmp_path / "run"), current)  # accepted
  assert json.loads((tmp_path / "run" / "config.json").read_text()) == old  # untouched
  changed = json.loads(json.dumps(current))
  changed["method_kwargs"]["weights_from_epoch"] = 5
  with pytest.raises(validate.InputError, match=r"of another configuration \(method_kwargs\.weights_from_epoch: "
                     r"\(not recorded\) there, 5 here\)"):
    run_dir_lib.check_run_dir(str(tmp_path / "run"), changed)
  other = json.loads(json.dumps(current))
  other["method_kwargs"]["temperature"] = 3.0
  with pytest.raises(validate.InputError, match="another configuration"):
    run_dir_lib.check_run_dir(str(tmp_path / "run"), other)


def test_a_new_knob_that_changed_the_method_makes_an_earlier_run_another_run(tmp_path):
  """LTKD's rebalance defaults to the paper's batch variant; runs from before it computed
  the prior variant, so their folders are not the same run (refused, not resumed), and a
  finished one is not read back as a result of the new default."""
  from krd_jax.train import run_dir as run_dir_lib
  current, old = _run_from_before(tmp_path, "ltkd", "rebalance")
  (tmp_path / "run" / "final.json").write_text(json.dumps({"test": {}}))
  assert run_dir_lib.finished(str(tmp_path / "run"), current) is None
  assert run_dir_lib.finished(str(tmp_path / "run"), old) == {"test": {}}
  with pytest.raises(validate.InputError, match="another configuration"):
    run_dir_lib.check_run_dir(str(tmp_path / "run"), current)


def test_a_methods_own_warm_up_overrides_the_students():
  """methods.<m>.warmup_epochs >= 0 is the method's ramp (KD 0, DKD 20 in the CIFAR
  recipes); -1 defers to student.distill_warmup_epochs. Checked in the built step."""
  import jax
  from krd_jax import runs
  from krd_jax.train import state as state_lib
  from krd_jax.train import student as student_lib
  from krd_jax.train import teacher as teacher_lib
  from test_train import _config, _tiny_dataset
  kd = methods.get("kd")
  assert kd.warmup_epochs({}, 7) == 7 and kd.warmup_epochs({"warmup_epochs": 0}, 7) == 0
  ds = _tiny_dataset()
  for own, expected_scale in ((-1, 0.0), (0, 1.0), (2, 0.0)):
    cfg = ml_collections.ConfigDict(_config("unused", model="mlp", method="kd").to_dict())
    cfg.student.distill_warmup_epochs = 3
    cfg.methods.kd.warmup_epochs = own
    cfg = cfg.lock()
    mesh = runs.make_mesh(cfg)
    model = state_lib.build_model(cfg.teacher, ds.num_classes, jnp.float32)
    teacher = teacher_lib.Teacher(
        model, state_lib.init_variables(model, ds.image_shape, jax.random.PRNGKey(0)), {}, {})
    setup = student_lib.student_setup(cfg, ds, mesh, teacher)
    batch = next(iter(setup.loader.epoch(0)))
    _, metrics = jax.jit(setup.step)(setup.state.replace(teacher=teacher.variables), batch,
                                     setup.rng)
    assert float(metrics["distill_scale"]) == expected_scale, own


def test_tables_name_methods_as_papers_do_with_the_config_name_where_it_differs(toy):
  assert methods.display_name("krd") == "KRDistill (krd)"
  assert [methods.display_name(m) for m in ("kd", "ce", "bkd", "ltkd")] == [
      "KD", "CE", "BKD", "LTKD"]
  assert methods.display_name("balanced_softmax") == "Balanced Softmax"
  assert methods.display_name("logit_adjusted") == "logit-adjusted CE (logit_adjusted)"
  assert methods.display_name("toy_gap") == "Toy gap"  # same words: no brackets
  with pytest.raises(ValueError, match="unknown student method 'nope'"):
    methods.display_name("nope")
  from krd_jax import losses
  assert losses.teacher_title("ldam", drw_epoch=160) == "LDAM-DRW"
  assert losses.teacher_title("ce", drw_epoch=160) == "CE + DRW"
  assert losses.teacher_title("logit_adjusted") == "logit-adjusted CE"
  assert set(losses.TEACHER_LOSS_TITLES) == set(losses.teacher_losses())


def _val_context(logits, labels, counts, with_val=True):
  return methods.RunContext(num_classes=len(counts), seed=0, class_means=lambda: None,
                            val_logits=(lambda: (logits, labels)) if with_val else None,
                            train_counts=np.asarray(counts))


def test_krd_fits_tau_and_temperature_on_the_validation_split():
  """tau_from / calibrate: the constants are calibration's fits of the teacher's val
  logits; "auto" fits where there is a validation split and keeps `tau` where not."""
  from krd_jax import calibration
  from krd_jax import priors
  rng = np.random.default_rng(0)
  counts = np.array([300, 60, 12])
  labels = np.repeat(np.arange(3), 50)
  logits = 3.0 * rng.normal(size=(150, 3)) + 1.5 * priors.log_prior(counts)
  logits[np.arange(150), labels] += 4.0
  krd = methods.get("krd")
  hp = krd.check({"use_rrd": False})
  assert hp["tau_from"] == "auto" and not hp["calibrate"]
  tau, _ = calibration.post_hoc_tau(logits, labels, priors.log_prior(counts))
  assert krd.constants(hp, _val_context(logits, labels, counts)) == {"fitted_tau": tau}
  assert krd.constants(hp, _val_context(logits, labels, counts, with_val=False)) == {}
  fixed = krd.check({"use_rrd": False, "tau_from": "fixed", "calibrate": True, "tau": 0.5})
  s, _ = calibration.fit_temperature(logits, labels, priors.log_prior(counts), 0.5)
  assert krd.constants(fixed, _val_context(logits, labels, counts)) == {
      "teacher_scale": pytest.approx(1 / s)}
  # Asked to fit on a split the run does not have: one line saying what to set.
  for asked in ({"tau_from": "val"}, {"calibrate": True}):
    with pytest.raises(validate.InputError, match="data.val_per_class > 0"):
      krd.constants(krd.check({"use_rrd": False, **asked}),
                    _val_context(logits, labels, counts, with_val=False))
  # Without LRD nothing is fitted (tau and the temperature are LRD's).
  assert krd.constants(krd.check({"use_rrd": False, "use_lrd": False}),
                       _val_context(logits, labels, counts)) == {}


def test_fitting_on_a_validation_split_that_is_not_there_is_refused_up_front():
  """Checked with the config (before a teacher trains), for the methods a command runs."""
  cfg = config_lib.default_config().unlock()  # val_per_class = 0
  cfg.student.method = "krd"
  cfg.methods.krd.tau_from = "val"
  with pytest.raises(validate.InputError,
                     match=r"methods.krd.tau_from='val' fit on the validation split, and "
                           r"config.data.val_per_class is 0"):
    validate.check_config(cfg.lock(), "student")
  validate.check_config(cfg, "teacher")  # the teacher does not run krd
  cfg.methods.krd.update(tau_from="auto", calibrate=True)
  with pytest.raises(validate.InputError, match="calibrate=True"):
    validate.check_config(cfg, "student")
  cfg.methods.krd.calibrate = False
  validate.check_config(cfg, "student")  # "auto" falls back to tau without a split
  cfg.data.val_per_class = 5
  cfg.methods.krd.update(tau_from="val", calibrate=True)
  validate.check_config(cfg, "student")


def test_acts_with_takes_a_tuple_as_any_of_its_values():
  rule = methods.base.acts_with(form=("a", "b"), on=True)
  assert rule({"form": "a", "on": False}, False) is None
  assert rule({"form": "b", "on": False}, True) is None
  assert rule({"form": "c", "on": True}, False) is None
  assert rule({"form": "c", "on": False}, False) == "form='a' or form='b' or on=True"
  # A tuple is a set of values, never a value itself.
  assert methods.base.acts_with(form=("a",))({"form": ("a",)}, False) == "form='a'"


def test_each_knob_declares_when_it_acts():
  krd = methods.get("krd")
  assert krd.idle_unless("lam", {}, False) == "use_rrd=True"
  assert krd.idle_unless("lam", {"use_rrd": True}, False) is None
  assert krd.idle_unless("anchor", {}, True) == "use_rrd=True"
  assert krd.idle_unless("swap", {"use_lrd": False}, True) == "use_lrd=True"
  assert krd.idle_unless("rho", {"use_lrd": False}, True) == "use_rrd=True or use_lrd=True"
  # tau: replaced by the fitted tau where "auto" finds a validation split, or with "val".
  assert krd.idle_unless("tau", {}, False) is None
  assert "tau_from='fixed'" in krd.idle_unless("tau", {}, True)
  assert "tau_from='fixed'" in krd.idle_unless("tau", {"tau_from": "val"}, False)
  assert krd.idle_unless("tau", {"tau_from": "fixed"}, True) is None
  assert krd.idle_unless("tau", {"use_lrd": False, "tau_from": "fixed"}, True) == \
      "use_lrd=True"
  assert krd.idle_unless("ce", {"use_lrd": False}, True) is None  # always acts
  assert krd.idle_unless("nckd_weight", {}, True) == \
      "lrd_form='decoupled' or lrd_form='target'"
  assert krd.idle_unless("nckd_weight", {"lrd_form": "decoupled"}, True) is None
  assert krd.idle_unless("nckd_weight", {"lrd_form": "target"}, True) is None
  assert krd.idle_unless("lrd_form", {"use_lrd": False}, True) == "use_lrd=True"
  # Every knob of every method answers at its defaults, with and without a split.
  for name in methods.names():
    method = methods.get(name)
    for knob in method.params:
      for has_val in (False, True):
        answer = method.idle_unless(knob, {}, has_val)
        assert answer is None or isinstance(answer, str)
