"""The baselines' recipes, held against their authors' own values field by field.

Each reference value below names the file of the authors' code it comes from
(docs/method.md, "The baselines"); a config that drifts from it is a red test. Where a
config differs on purpose, the difference is asserted here too, with its reason in
krd_jax/configs/common.py.
"""

import importlib
import os

import pytest

from krd_jax import __main__ as cli_lib
from krd_jax import configs
from krd_jax import validate
from krd_jax.configs import cifar100_lt, cifar10_lt, common, imagenet_lt, inat2018

# megvii-research/mdistiller, mdistiller/engine/cfg.py: CIFAR KD.
# No warm-up for KD (its distiller has none); DKD ramps over 20 epochs (DKD.WARMUP).
MDISTILLER_CIFAR_KD = {"ce_weight": 0.1, "kd_weight": 0.9, "temperature": 4.0,
                       "warmup_epochs": 0}
# mdistiller configs/cifar100/dkd/{res32x4_res8x4,wrn40_2_wrn_16_2,res56_res20,
# res110_res32}.yaml: T 4, alpha 1, beta per pair.
MDISTILLER_CIFAR_DKD_BETA = {("resnet32x4", "resnet8x4"): 8.0,
                             ("wrn_40_2", "wrn_16_2"): 6.0}
# mdistiller configs/imagenet/r34_r18/kd.yaml and dkd.yaml.
MDISTILLER_IMAGENET_KD = {"ce_weight": 0.5, "kd_weight": 0.5, "temperature": 1.0,
                          "warmup_epochs": 0}
MDISTILLER_IMAGENET_DKD = {"alpha": 1.0, "beta": 0.5, "temperature": 1.0,
                           "warmup_epochs": 1}
# EricZsy/BalancedKnowledgeDistillation train_student.py: T 2, effective-number beta;
# the weights from epoch 160 of 200 on CIFAR-10 (plain KD before), from 0 on CIFAR-100.
BKD = {"temperature": 2.0, "kd_weight": 1.0, "beta_en": 0.9999, "warmup_epochs": 0}
BKD_WEIGHTS_FROM = {"cifar10_lt": 160, "cifar100_lt": 0}
# kaidic/LDAM-DRW losses.py / cifar_train.py: s 30, max margin 0.5, DRW at 160 of 200,
# models/resnet_cifar.py NormedLinear.
LDAM_DRW = {"loss": "ldam", "loss_kwargs": {"max_margin": 0.5, "scale": 30.0},
            "drw_epoch": 160, "classifier": "cosine"}


def _subset(section, reference):
  return {k: section[k] for k in reference}


@pytest.mark.parametrize("config, arg, pair", [
    (cifar10_lt, "", ("resnet32", "resnet8")),
    (cifar100_lt, "", ("resnet32x4", "resnet8x4")),
    (cifar100_lt, "wrn", ("wrn_40_2", "wrn_16_2")),
])
def test_cifar_configs_run_the_authors_baselines(config, arg, pair):
  cfg = config.get_config(arg)
  assert (cfg.teacher.model, cfg.student.model) == pair
  assert _subset(cfg.methods.kd, MDISTILLER_CIFAR_KD) == MDISTILLER_CIFAR_KD
  assert (cfg.methods.dkd.alpha, cfg.methods.dkd.temperature,
          cfg.methods.dkd.warmup_epochs) == (1.0, 4.0, 20)
  # resnet32 -> resnet8 is not an mdistiller pair: beta 2, as its plain-ResNet pairs.
  assert cfg.methods.dkd.beta == MDISTILLER_CIFAR_DKD_BETA.get(pair, 2.0)
  assert _subset(cfg.methods.bkd, BKD) == BKD
  assert cfg.methods.bkd.weights_from_epoch == BKD_WEIGHTS_FROM[cfg.data.name]
  # KRDistill and LTKD keep the student-wide ramp (-1: defer to it).
  assert cfg.student.distill_warmup_epochs == 20 and cfg.methods.krd.warmup_epochs == -1
  validate.check_config(cfg, "demo")


def test_local_mode_drops_every_warm_up():
  cfg = cifar100_lt.get_config("local")
  assert cfg.student.distill_warmup_epochs == 0
  assert all(hp.get("warmup_epochs", -1) <= 0 for hp in cfg.methods.values())


def test_cpu30_recipe_switches_bkd_and_warms_up_at_the_same_fractions():
  cfg = cifar10_lt.get_config("cpu30,offline")
  assert (cfg.student.epochs, cfg.methods.bkd.weights_from_epoch) == (30, 24)
  # 20 of 200 epochs -> 3 of 30, for DKD and the student-wide ramp alike.
  assert cfg.methods.dkd.warmup_epochs == cfg.student.distill_warmup_epochs == 3
  assert cfg.data.name == "image_folder"


@pytest.mark.parametrize("config", [imagenet_lt, inat2018])
def test_large_configs_run_mdistillers_imagenet_baselines(config):
  cfg = config.get_config("")
  assert _subset(cfg.methods.kd, MDISTILLER_IMAGENET_KD) == MDISTILLER_IMAGENET_KD
  assert _subset(cfg.methods.dkd, MDISTILLER_IMAGENET_DKD) == MDISTILLER_IMAGENET_DKD


@pytest.mark.parametrize("config", [cifar10_lt, cifar100_lt])
def test_ldam_drw_teacher_recipe(config):
  cfg = config.get_config("ldam_drw_teacher")
  teacher = cfg.teacher
  assert (teacher.loss, teacher.loss_kwargs.to_dict(), teacher.drw_epoch,
          teacher.model_kwargs.classifier) == tuple(LDAM_DRW.values())
  assert teacher.epochs == 200 and cfg.workdir.endswith("_ldam_drw_teacher")
  validate.check_config(cfg, "teacher")


@pytest.mark.parametrize("recipe, loss", [("la_teacher", "logit_adjusted"),
                                          ("bs_teacher", "balanced_softmax")])
def test_balanced_teacher_recipes(recipe, loss):
  cfg = cifar10_lt.get_config(f"offline,{recipe}")
  assert cfg.teacher.loss == loss and cfg.workdir.endswith(recipe)
  assert cfg.teacher.model_kwargs.to_dict() == {}


# ----------------------------------------------------------------------------- shipped recipes


def test_every_recipe_module_is_shipped_and_loads_by_name():
  assert configs.names() == ("cifar100_lt", "cifar10_lt", "digits_lt", "imagenet_lt",
                             "inat2018")
  for name in configs.names():
    assert os.path.isfile(configs.path(name))
    assert configs.get(name).to_dict() == importlib.import_module(
        f"krd_jax.configs.{name}").get_config("").to_dict()
  assert configs.get().to_dict() == configs.get("digits_lt").to_dict()


def test_cifar100_offline_reads_the_png_folder_with_the_cifar100_recipe():
  cfg = configs.get("cifar100_lt:offline,local")
  assert cfg.data.name == "image_folder"
  assert cfg.data.data_dir == os.path.expanduser("~/.cache/krd_jax/cifar100-png")
  assert cfg.data.imbalance == 100.0 and cfg.data.group_split == "absolute"
  # BKD's CIFAR-100 switch (from epoch 0) was chosen before the data source changed.
  assert cfg.methods.bkd.weights_from_epoch == 0
  assert (cfg.teacher.model, cfg.student.model) == ("resnet32x4", "resnet8x4")


def test_two_teacher_recipes_are_refused():
  with pytest.raises(ValueError, match="each choose the teacher; allowed: one"):
    configs.get("cifar10_lt:la_teacher,bs_teacher")


def test_resolve_takes_a_recipe_name_or_a_file(tmp_path, monkeypatch):
  assert configs.resolve("cifar10_lt:offline,local") == (
      configs.path("cifar10_lt") + ":offline,local")
  assert configs.resolve("digits_lt") == configs.path("digits_lt")
  own = tmp_path / "mine.py"
  own.write_text("def get_config(arg=''):\n  pass\n")
  assert configs.resolve(f"{own}:x") == f"{own}:x"  # a file is left to config_flags
  missing = str(tmp_path / "missing.py")
  assert configs.resolve(missing) == missing
  with pytest.raises(ValueError, match=r"does not exist; the recipe ships with krd_jax: "
                     r"--config=cifar10_lt:offline$"):
    configs.resolve("experiments/configs/cifar10_lt.py:offline")
  with pytest.raises(ValueError, match=r"no shipped recipe 'cifar10'; allowed: .*cifar10_lt"):
    configs.resolve("cifar10:offline")
  # A folder named like a recipe (a run's workdir, say) is not a config file.
  (tmp_path / "digits_lt").mkdir()
  monkeypatch.chdir(tmp_path)
  assert configs.resolve("digits_lt:local") == configs.path("digits_lt") + ":local"
  monkeypatch.undo()
  assert configs.resolve_argv(["x", "--config", "digits_lt:local", "--config.seed=1"]) == [
      "x", "--config", configs.path("digits_lt") + ":local", "--config.seed=1"]


def test_cli_resolves_a_recipe_name_and_refuses_an_unknown_one(capsys):
  command, cfg = cli_lib.parse(["krd_jax", "show", "--config=cifar100_lt:wrn",
                                "--config.seed=3"])
  assert command == "show" and cfg.student.model == "wrn_16_2" and cfg.seed == 3
  assert cli_lib.cli(["krd_jax", "show", "--config=cifar100_lt:wrn"]) == 0
  assert "wrn_16_2" in capsys.readouterr().out
  assert cli_lib.cli(["krd_jax", "demo", "--config=nope"]) == 2
  assert "no shipped recipe 'nope'" in capsys.readouterr().err


def test_demo_methods_typed_as_a_list_on_the_command_line_gets_the_tuple_syntax(capsys):
  # config_flags reads "krd,kd" as the one-element tuple ("krd,kd",).
  assert cli_lib.cli(["krd_jax", "demo", "--config.demo_methods=krd,kd"]) == 2
  err = capsys.readouterr().err
  assert "config.demo_methods=('krd,kd',) is not allowed" in err
  assert """--config.demo_methods="('krd','kd')\"""" in err


@pytest.mark.parametrize("config, num_classes, n_max, val, train_images, pool", [
    (cifar10_lt, 10, 4900, 100, 12156, 5000),
    (cifar100_lt, 100, 450, 50, 9754, 500),
])
def test_val_argument_leaves_a_balanced_validation_split_out(config, num_classes, n_max,
                                                             val, train_images, pool):
  """`val`: a smaller head so every class leaves `val` images out of training (the
  counts move off LDAM-DRW's exactly, by the amount the docstring states)."""
  from krd_jax.data import profiles
  cfg = config.get_config("val")
  assert (cfg.data.n_max, cfg.data.val_per_class) == (n_max, val)
  counts = profiles.long_tail_counts(n_max, num_classes, cfg.data.imbalance)
  assert int(counts.sum()) == train_images and int((pool - counts).min()) >= val
  assert f"{train_images:,}" in common.with_validation.__doc__


@pytest.mark.parametrize("config, bkd_weights_from", [(cifar10_lt, 6), (cifar100_lt, 0)])
def test_cpu_recipe_is_the_small_pair_with_its_own_schedule(config, bkd_weights_from):
  cfg = config.get_config("cpu,val,offline")
  assert (cfg.teacher.model, cfg.student.model) == common.CPU_PAIR
  assert (cfg.teacher.epochs, cfg.student.epochs) == (16, 8)
  assert tuple(cfg.teacher.optim.step_epochs) == (12, 14)
  assert tuple(cfg.student.optim.step_epochs) == (6, 7)
  assert cfg.teacher.optim.warmup_epochs == cfg.student.optim.warmup_epochs == 1
  assert cfg.student.distill_warmup_epochs == 1
  # BKD's class weights from 80% of training on CIFAR-10 (epoch 6 of 8), from 0 on CIFAR-100.
  assert cfg.methods.bkd.weights_from_epoch == bkd_weights_from


@pytest.mark.parametrize("config, bkd_weights_from", [(cifar10_lt, 0.8), (cifar100_lt, 0)])
@pytest.mark.parametrize("recipe, epochs, steps, warmup", [("cpu16", 16, (12, 14), 2),
                                                          ("cpu32", 32, (25, 28), 3)])
def test_longer_cpu_recipes_train_students_longer_from_the_same_teacher(
    config, bkd_weights_from, recipe, epochs, steps, warmup):
  from krd_jax.ablate import planning
  short, long = (config.get_config(f"{word},val,offline") for word in ("cpu", recipe))
  assert long.teacher.to_dict() == short.teacher.to_dict()
  assert planning.teacher_key(long, 0) == planning.teacher_key(short, 0)
  assert (long.student.epochs, tuple(long.student.optim.step_epochs)) == (epochs, steps)
  # 20 of 200 epochs -> 2 of 16, 3 of 32; BKD's switch at 80% of training on CIFAR-10.
  assert long.methods.dkd.warmup_epochs == long.student.distill_warmup_epochs == warmup
  assert long.methods.bkd.weights_from_epoch == int(bkd_weights_from * epochs)


@pytest.mark.parametrize("config, arg", [(cifar100_lt, "cpu,wrn"), (cifar10_lt, "cpu,cpu30"),
                                         (cifar10_lt, "cpu,cpu16"),
                                         (cifar100_lt, "cpu16,wrn")])
def test_two_pair_or_schedule_recipes_are_refused(config, arg):
  with pytest.raises(ValueError, match=r"each choose the (pair|recipe); allowed: one"):
    config.get_config(arg)


def test_bkd_defaults_are_its_authors_everywhere():
  """The method's own defaults (the embedded digits_lt runs them) are the authors' T and
  weight, not only the CIFAR recipes'."""
  from krd_jax import methods
  defaults = methods.get("bkd").defaults()
  assert {k: defaults[k] for k in ("temperature", "kd_weight", "beta_en")} == {
      k: BKD[k] for k in ("temperature", "kd_weight", "beta_en")}


def test_offline_recipe_without_its_folder_names_the_extraction_command(
    tmp_path, monkeypatch, capsys):
  monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.cache/krd_jax/cifar100-png there
  workdir = tmp_path / "w"
  rc = cli_lib.cli(["krd_jax", "teacher", "--config=cifar100_lt:offline,local",
                    f"--config.workdir={workdir}"])
  assert rc == cli_lib.EXIT_BAD_INPUT
  err = capsys.readouterr().err
  assert "an existing folder (the offline copy: extract its archive there, mkdir -p " \
      "~/.cache/krd_jax/cifar100-png && tar xzf cifar100-png.tar.gz -C " \
      "~/.cache/krd_jax/cifar100-png)" in err
  assert len([line for line in err.splitlines() if line.strip()]) == 1
  assert not workdir.exists()
