"""CIFAR-100-LT (IF=100, 10,847 training images; 35/35/30 many/medium/few classes).

  python -m krd_jax demo --config=cifar100_lt              # resnet32x4 -> resnet8x4
  python -m krd_jax demo --config=cifar100_lt:wrn          # wrn_40_2 -> wrn_16_2
  python -m krd_jax demo --config=cifar100_lt:offline      # ../shared/data folder
  python -m krd_jax demo --config=cifar100_lt:offline,local  # smoke test

Data: tfds cifar100 (downloaded by tfds on first use), or with `offline` the lossless
PNG folder at ~/.cache/krd_jax/cifar100-png (extract ../shared/data/cifar100-png.tar.gz
there). Arguments (comma-separated): `wrn` picks the WRN pair; `local` runs 2 epochs
per model; `la_teacher`, `bs_teacher` or
`ldam_drw_teacher` trains a balanced teacher. KD, DKD (beta per pair) and BKD run at
their authors' CIFAR settings (common.cifar_baselines).
Expected runtime: full recipe (200 epochs, teacher + 5 students) about 1.5 h for the
ResNet pair on one modern GPU; `local` several minutes on 2 CPU cores.
"""

from krd_jax.configs import common


def get_config(arg: str = ""):
  args = common.parse_args(arg, ("wrn", "offline", "local", *common.TEACHER_RECIPES))
  pair = ("wrn_40_2", "wrn_16_2") if "wrn" in args else ("resnet32x4", "resnet8x4")
  cfg = common.cifar_config("cifar100_lt", *pair)
  common.cifar_baselines(cfg, *pair)
  return common.finish(cfg, args, offline_folder="cifar100-png")
