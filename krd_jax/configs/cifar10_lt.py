"""CIFAR-10-LT (IF=100, 12,406 training images): ResNet-32 teacher -> ResNet-8 student.

  python -m krd_jax demo --config=cifar10_lt               # tfds cifar10
  python -m krd_jax demo --config=cifar10_lt:offline       # the offline JPEG folder
  python -m krd_jax demo --config=cifar10_lt:offline,local # smoke test
  python -m krd_jax demo --config=cifar10_lt:offline,cpu,val  # 2 CPU cores

Arguments (comma-separated): `offline` reads the CIFAR-10 image folder at
~/.cache/krd_jax/cifar10-jpg (extract the offline archive cifar10-jpg.tar.gz there) instead
of downloading tfds cifar10; `local` runs 2 epochs per model; `cpu` is the CPU-sized
recipe shared with CIFAR-100-LT (ResNet-14 -> ResNet-8, 16 teacher and 8 student epochs:
common.cpu_config); `cpu16` / `cpu32` the same with 16 / 32 student epochs, from the same teacher;
`cpu30` the ResNet-32 -> ResNet-8 pair over 30 epochs (the earlier
CPU recipe, about 2 h per seed of every row on 2 cores); `val` carves a balanced
validation split (100 per class; head 4,900, 12,156 training images:
common.with_validation); `la_teacher`, `bs_teacher` or `ldam_drw_teacher` trains a
balanced teacher (logit-adjusted CE, Balanced Softmax, LDAM-DRW with its cosine
classifier). KD, DKD and BKD run at their authors' CIFAR settings (common.cifar_baselines).
Expected runtime: the full recipe (200 epochs) is not measured yet; `cpu` 14 min for the
teacher and 22-24 min for the seven demo students of one seed, trained as one cohort, on
2 idle AMD EPYC cores (2026-12-06; on 2026-12-01, cores shared: 20-37 min per teacher,
4-8 per student trained alone); `cpu16` 17.5-19 min per seed for a cohort of three
(KRDistill, DKD, BKD), the teacher reused; `local` a few minutes on CPU.
"""

from krd_jax.configs import common


PAIR = ("resnet32", "resnet8")


def recipe(epochs: int):
  """The recipe over `epochs` epochs, unlocked: its lr steps, warm-ups and BKD's switch
  all scale with the schedule (common.cifar_config, common.cifar_baselines)."""
  return common.cifar_baselines(common.cifar_config("cifar10_lt", *PAIR, epochs=epochs), *PAIR)


def get_config(arg: str = ""):
  args = common.parse_args(arg, ("offline", "local", *common.CPU_RECIPES, "cpu30", "val",
                                 *common.TEACHER_RECIPES))
  common.at_most_one(args, (*common.CPU_RECIPES, "cpu30"), "recipe")
  if cpu := args & set(common.CPU_RECIPES):
    cfg = common.cpu_config("cifar10_lt", *cpu)  # one word: at_most_one refused two
  else:
    cfg = recipe(epochs=30 if "cpu30" in args else 200)
  return common.finish(cfg, args, offline_folder="cifar10-jpg")
