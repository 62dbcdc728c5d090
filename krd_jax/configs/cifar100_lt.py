"""CIFAR-100-LT (IF=100, 10,847 training images; 35/35/30 many/medium/few classes).

  python -m krd_jax demo --config=cifar100_lt              # resnet32x4 -> resnet8x4
  python -m krd_jax demo --config=cifar100_lt:wrn          # wrn_40_2 -> wrn_16_2
  python -m krd_jax demo --config=cifar100_lt:offline      # the offline PNG folder
  python -m krd_jax demo --config=cifar100_lt:offline,local  # smoke test
  python -m krd_jax demo --config=cifar100_lt:offline,cpu,val  # 2 CPU cores, about 30 min

Data: tfds cifar100 (downloaded by tfds on first use), or with `offline` the lossless
PNG folder at ~/.cache/krd_jax/cifar100-png (extract the offline archive cifar100-png.tar.gz
there). Arguments (comma-separated): `wrn` picks the WRN pair; `cpu` the CPU-sized
recipe (ResNet-14 -> ResNet-8, 16 teacher and 8 student epochs: common.cpu_config),
`cpu16` / `cpu32` the same with 16 / 32 student epochs from the same teacher; `val` carves a balanced
validation split (50 per class; head 450, 9,754 training images: common.with_validation);
`local` runs 2 epochs per model; `la_teacher`, `bs_teacher` or `ldam_drw_teacher` trains
a balanced teacher. KD, DKD (beta per pair) and BKD run at
their authors' CIFAR settings (common.cifar_baselines).
Expected runtime: the full recipe (200 epochs) is not measured yet (a GPU run is
prepared: benchmarks/gpu_cifar100_lt.sh); `cpu` 10 min for the teacher and 16 min for five
distillers of one seed trained as one cohort on 2 idle AMD EPYC cores (2026-12-06; 13-19
min per teacher and 2-6 per student alone on 2026-12-01, cores shared); `local` several
minutes on 2 CPU cores.
"""

from krd_jax.configs import common


def get_config(arg: str = ""):
  args = common.parse_args(arg, ("wrn", *common.CPU_RECIPES, "val", "offline", "local",
                                 *common.TEACHER_RECIPES))
  common.at_most_one(args, ("wrn", *common.CPU_RECIPES), "pair")
  if cpu := args & set(common.CPU_RECIPES):
    cfg = common.cpu_config("cifar100_lt", *cpu)  # one word: at_most_one refused two
  else:
    pair = ("wrn_40_2", "wrn_16_2") if "wrn" in args else ("resnet32x4", "resnet8x4")
    cfg = common.cifar_baselines(common.cifar_config("cifar100_lt", *pair), *pair)
  return common.finish(cfg, args, offline_folder="cifar100-png")
