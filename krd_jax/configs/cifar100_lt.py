"""CIFAR-100-LT (IF=100, 10,847 training images; 35/35/30 many/medium/few classes).

  python -m krd_jax demo --config=cifar100_lt              # resnet32x4 -> resnet8x4
  python -m krd_jax demo --config=cifar100_lt:wrn          # wrn_40_2 -> wrn_16_2
  python -m krd_jax demo --config=cifar100_lt:offline      # ../shared/data folder
  python -m krd_jax demo --config=cifar100_lt:offline,local  # smoke test
  python -m krd_jax demo --config=cifar100_lt:offline,cpu,val  # 2 CPU cores, ~1 h

Data: tfds cifar100 (downloaded by tfds on first use), or with `offline` the lossless
PNG folder at ~/.cache/krd_jax/cifar100-png (extract ../shared/data/cifar100-png.tar.gz
there). Arguments (comma-separated): `wrn` picks the WRN pair; `cpu` the CPU-sized
recipe (ResNet-14 -> ResNet-8, 16 teacher and 8 student epochs); `val` carves a balanced
validation split (50 per class; head 450, 9,754 training images: common.with_validation);
`local` runs 2 epochs per model; `la_teacher`, `bs_teacher` or `ldam_drw_teacher` trains
a balanced teacher. KD, DKD (beta per pair) and BKD run at
their authors' CIFAR settings (common.cifar_baselines).
Expected runtime: full recipe (200 epochs, teacher + 5 students) about 1.5 h for the
ResNet pair on one modern GPU; `cpu` about 6 min for the teacher and 3-5 min per
student on 2 CPU cores; `local` several minutes on 2 CPU cores.
"""

from krd_jax.configs import common


# The CPU-sized recipe (`cpu`): a pair and schedule that train on 2 CPU cores in
# minutes per run (teacher about 6, student about 4), for screening and for 3-seed
# tables where no accelerator is available. Not a published pair.
CPU_PAIR = ("resnet14", "resnet8")
CPU_EPOCHS = {"teacher": 16, "student": 8}


def get_config(arg: str = ""):
  args = common.parse_args(arg, ("wrn", "cpu", "val", "offline", "local",
                                 *common.TEACHER_RECIPES))
  if {"wrn", "cpu"} <= args:
    raise ValueError("config arguments 'wrn' and 'cpu' each choose the pair; allowed: one")
  pair = (("wrn_40_2", "wrn_16_2") if "wrn" in args else
          CPU_PAIR if "cpu" in args else ("resnet32x4", "resnet8x4"))
  cfg = common.cifar_config("cifar100_lt", *pair,
                            epochs=CPU_EPOCHS["student"] if "cpu" in args else 200)
  if "cpu" in args:
    cpu_schedule(cfg)
  common.cifar_baselines(cfg, *pair)
  return common.finish(cfg, args, offline_folder="cifar100-png")


def cpu_schedule(cfg):
  """The `cpu` recipe's teacher runs CPU_EPOCHS["teacher"] epochs (its lr steps and
  warm-up scaled with them); the student keeps cifar_config's scaling at its own."""
  epochs = CPU_EPOCHS["teacher"]
  cfg.teacher.epochs = epochs
  cfg.teacher.optim.step_epochs = (int(0.8 * epochs), int(0.9 * epochs))
  for role in (cfg.teacher, cfg.student):
    role.optim.warmup_epochs = 1
  return cfg
