"""CIFAR-100-LT (IF=100, 10,847 training images; 35/35/30 many/medium/few classes).

  python -m krd_jax demo --config=experiments/configs/cifar100_lt.py              # resnet32x4 -> resnet8x4
  python -m krd_jax demo --config=experiments/configs/cifar100_lt.py:wrn          # wrn_40_2 -> wrn_16_2
  python -m krd_jax demo --config=experiments/configs/cifar100_lt.py:local        # smoke test

Data: tfds cifar100 (downloaded by tfds on first use). Arguments (comma-separated):
`wrn` picks the WRN pair; `local` runs 2 epochs per model; `la_teacher`, `bs_teacher` or
`ldam_drw_teacher` trains a balanced teacher. KD, DKD (beta per pair) and BKD run at
their authors' CIFAR settings (common.cifar_baselines).
Expected runtime: full recipe (200 epochs, teacher + 5 students) about 1.5 h for the
ResNet pair on one modern GPU; `local` several minutes on 2 CPU cores.
"""

from experiments.configs import common


def get_config(arg: str = ""):
  args = common.parse_args(arg, ("wrn", "local", *common.TEACHER_RECIPES))
  pair = ("wrn_40_2", "wrn_16_2") if "wrn" in args else ("resnet32x4", "resnet8x4")
  cfg = common.cifar_config("cifar100_lt", *pair)
  common.cifar_baselines(cfg, *pair)
  for recipe in args & set(common.TEACHER_RECIPES):
    common.teacher_recipe(cfg, recipe)
  if "local" in args:
    common.local_mode(cfg)
  return cfg.lock()
