"""Shared pieces of the CIFAR / ImageNet configs: the CIFAR recipe, the baselines as
their authors run them, the class-balanced teacher recipes, and config args.

Sources of every reference value: docs/method.md ("The baselines"), and
tests/test_recipes.py, which holds each against what the configs produce.
"""

import os

from krd_jax.config import default_config, optim_config

# DKD's beta per CIFAR pair (mdistiller configs/cifar100/dkd/*.yaml).
DKD_CIFAR_BETA = {("resnet32x4", "resnet8x4"): 8.0, ("wrn_40_2", "wrn_16_2"): 6.0,
                  ("resnet56", "resnet20"): 2.0, ("resnet110", "resnet32"): 2.0}
# ReviewKD's weight per CIFAR pair (the authors' CIFAR-100/script/reviewKD.sh; 1 elsewhere,
# mdistiller's default).
REVIEWKD_CIFAR_WEIGHT = {("resnet32x4", "resnet8x4"): 5.0}
# Teacher recipes a config argument can select: a teacher that is itself balanced.
TEACHER_RECIPES = ("la_teacher", "bs_teacher", "ldam_drw_teacher")


# The CPU-sized recipe (`cpu`, both CIFAR configs): a pair and schedule that train on 2
# CPU cores in minutes per run (measured 2026-12-01 on CIFAR-100-LT: teacher 13-19 min,
# student 2-6 min), for screening and for 3-seed tables where no accelerator is
# available. Not a published pair.
CPU_PAIR = ("resnet14", "resnet8")
CPU_EPOCHS = {"teacher": 16, "student": 8}
# The config arguments that choose a CPU recipe, by student epochs: `cpu16` and `cpu32`
# train the students two and four times as long from the same teacher (its run folder is
# shared with `cpu`'s), for the schedule question: does a ranking at 8 epochs hold longer?
CPU_RECIPES = {"cpu": CPU_EPOCHS["student"], "cpu16": 2 * CPU_EPOCHS["student"],
               "cpu32": 4 * CPU_EPOCHS["student"]}


def parse_args(arg: str, allowed: tuple[str, ...]) -> set[str]:
  """'local,offline' -> {'local', 'offline'}; unknown words are errors."""
  words = {w for w in arg.split(",") if w}
  unknown = words - set(allowed)
  if unknown:
    raise ValueError(f"unknown config argument(s) {sorted(unknown)}; allowed: {allowed}")
  return words


def at_most_one(args: set[str], choices, what: str) -> None:
  """Refuses config arguments that each choose the same thing (the pair, the teacher)."""
  chosen = sorted(args & set(choices))
  if len(chosen) > 1:
    raise ValueError(f"config arguments {chosen} each choose the {what}; allowed: one")


def distill_warmup(epochs: int) -> int:
  """DKD's 20-epoch distillation warm-up as the same fraction of a shorter schedule
  (mdistiller ramps over 20 of 240 epochs; our CIFAR recipe runs 200)."""
  return max(1, round(0.1 * epochs))


def cifar_config(dataset: str, teacher: str, student: str, epochs: int = 200,
                 teacher_epochs: int | None = None):
  """The LDAM-DRW / mdistiller-style CIFAR recipe: SGD 0.1 (0.05 for students),
  momentum 0.9, weight decay 5e-4, batch 128, 5 warm-up epochs, lr x0.1 at 80% and
  90% of training, random crop (pad 4) and flip, a DKD-style distillation warm-up over
  the first 10% of training (20 of 200 epochs; 3 of the `cpu30` recipe's 30)."""
  cfg = default_config().unlock()
  cfg.workdir = f"runs/{dataset}_{teacher}_{student}"
  cfg.data.name = dataset
  cfg.data.imbalance = 100.0
  cfg.data.crop_pad = 4
  cfg.data.flip = True
  cfg.data.group_split = "absolute"
  for role, model, lr, role_epochs in ((cfg.teacher, teacher, 0.1, teacher_epochs or epochs),
                                       (cfg.student, student, 0.05, epochs)):
    role.model = model
    role.model_kwargs = {}
    role.epochs = role_epochs
    role.batch_size = 128
    milestones = (int(0.8 * role_epochs), int(0.9 * role_epochs))
    role.optim = optim_config(name="sgd", lr=lr, weight_decay=5e-4, schedule="step",
                              warmup_epochs=5, step_epochs=milestones, step_gamma=0.1)
  cfg.student.distill_warmup_epochs = distill_warmup(epochs)
  cfg.eval_every_epochs = 10
  cfg.checkpoint_every_epochs = 10
  cfg.log_every_steps = 100
  return cfg


def cpu_config(dataset: str, recipe: str = "cpu"):
  """A CPU recipe (`cpu`, `cpu16` or `cpu32`: CPU_RECIPES) on `dataset`: CPU_PAIR for CPU_EPOCHS
  (the student's as the recipe says), one warm-up epoch (5 of 200, rounded up at this
  length), the baselines at their authors' settings; lr steps and warm-ups scale with
  the schedule."""
  cfg = cifar_config(dataset, *CPU_PAIR, epochs=CPU_RECIPES[recipe],
                     teacher_epochs=CPU_EPOCHS["teacher"])
  for role in (cfg.teacher, cfg.student):
    role.optim.warmup_epochs = 1
  return cifar_baselines(cfg, *CPU_PAIR)


def cifar_baselines(cfg, teacher: str, student: str):
  """KD, DKD and BKD at their authors' CIFAR settings."""
  # mdistiller mdistiller/engine/cfg.py (CIFAR): 0.1 CE + 0.9 KD at T = 4.
  cfg.methods.kd.update(ce_weight=0.1, kd_weight=0.9, temperature=4.0, warmup_epochs=0)
  # mdistiller configs/cifar100/dkd/*.yaml: T = 4, alpha = 1, beta per pair. ResNet-32 ->
  # ResNet-8 is not one of its pairs: beta 2, the value of its two plain-ResNet pairs.
  cfg.methods.dkd.update(alpha=1.0, beta=DKD_CIFAR_BETA.get((teacher, student), 2.0),
                         temperature=4.0, warmup_epochs=distill_warmup(cfg.student.epochs))
  # EricZsy/BalancedKnowledgeDistillation train_student.py: T = 2, KD weight 1; the class
  # weights from epoch 160 of 200 on CIFAR-10 (plain KD before), from 0 on CIFAR-100.
  switch = int(0.8 * cfg.student.epochs) if cfg.data.name == "cifar10_lt" else 0
  cfg.methods.bkd.update(temperature=2.0, kd_weight=1.0, weights_from_epoch=switch,
                         warmup_epochs=0)
  # The authors' CIFAR ReviewKD weight for the pair; its ramp is the student-wide one
  # (20 of 240 epochs in mdistiller: about cifar_config's 10%).
  cfg.methods.reviewkd.review_weight = REVIEWKD_CIFAR_WEIGHT.get((teacher, student), 1.0)
  # CTKD's curriculum: lambda reaches -1 after 10 of the authors' 240 epochs.
  cfg.methods.ctkd.reversal_epochs = max(1, round(10 * cfg.student.epochs / 240))
  # KRDistill and LTKD keep the student-wide ramp (cifar_config).
  return cfg


def imagenet_baselines(cfg):
  """KD and DKD at mdistiller's ImageNet settings (its pair is ResNet-34 -> ResNet-18;
  ours ResNet-50 -> ResNet-18)."""
  # configs/imagenet/r34_r18/kd.yaml: 0.5 CE + 0.5 KD at T = 1.
  cfg.methods.kd.update(ce_weight=0.5, kd_weight=0.5, temperature=1.0)
  # configs/imagenet/r34_r18/dkd.yaml: CE 1, beta 0.5, T 1, warm-up 1 epoch (alpha the
  # default 1).
  cfg.methods.kd.warmup_epochs = 0
  cfg.methods.dkd.update(alpha=1.0, beta=0.5, temperature=1.0, warmup_epochs=1)
  return cfg


def teacher_recipe(cfg, recipe: str):
  """A balanced teacher for any student method: logit-adjusted CE ("la_teacher"),
  Balanced Softmax ("bs_teacher") or LDAM-DRW with its cosine classifier
  ("ldam_drw_teacher": s = 30, largest margin 0.5, class-balanced weights from 80% of
  training, i.e. epoch 160 of 200, kaidic/LDAM-DRW cifar_train.py)."""
  tcfg = cfg.teacher
  if recipe == "la_teacher":
    tcfg.loss = "logit_adjusted"
  elif recipe == "bs_teacher":
    tcfg.loss = "balanced_softmax"
  elif recipe == "ldam_drw_teacher":
    tcfg.loss = "ldam"
    tcfg.loss_kwargs = {"max_margin": 0.5, "scale": 30.0}
    tcfg.drw_epoch = int(0.8 * tcfg.epochs)
    tcfg.model_kwargs = {**tcfg.model_kwargs.to_dict(), "classifier": "cosine"}
    # Its logits are cosines in [-1, 1]: distilling from them at T = 4 gives nearly
    # uniform targets (the authors never distilled from it; scale them yourself).
  else:
    raise ValueError(f"unknown teacher recipe {recipe!r}; allowed: {TEACHER_RECIPES}")
  cfg.workdir += f"_{recipe}"
  return cfg


# The offline copies `offline` reads, by cache folder: the archive each is extracted from.
OFFLINE_ARCHIVES = {"cifar10-jpg": "cifar10-jpg.tar.gz", "cifar100-png": "cifar100-png.tar.gz"}


def offline_folder(folder: str) -> str:
  """~/.cache/krd_jax/<folder>, where `offline` reads an extracted archive."""
  return os.path.expanduser(f"~/.cache/krd_jax/{folder}")


def extraction_command(data_dir: str) -> str | None:
  """The command that extracts the offline archive `data_dir` is the cache folder of, or
  None where it is not one (a refusal names it: the folder is missing)."""
  for folder, archive in OFFLINE_ARCHIVES.items():
    if os.path.abspath(os.path.expanduser(data_dir)) == offline_folder(folder):
      return (f"mkdir -p ~/.cache/krd_jax/{folder} && tar xzf {archive} -C "
              f"~/.cache/krd_jax/{folder}")
  return None


def offline(cfg, folder: str):
  """Reads the dataset from the image folder ~/.cache/krd_jax/<folder> (train/ and test/,
  one sub-folder per class, alphabetical = CIFAR's label order; extract the offline
  archive there: extraction_command) instead of downloading it through tfds. Call it after the
  teacher and baseline recipes: they key on cfg.data.name."""
  cfg.data.name = "image_folder"
  cfg.data.data_dir = offline_folder(folder)
  return cfg


# `val`: (head-class images, validation images per class); the smaller head leaves out
# enough images for a balanced validation split in every class.
VAL_SPLITS = {"cifar10_lt": (4900, 100), "cifar100_lt": (450, 50)}


def with_validation(cfg):
  """The `val` argument: a balanced validation split carved from the images the profile
  leaves out, at the cost of a slightly smaller head (the training counts are no longer
  LDAM-DRW's exactly: 12,156 instead of 12,406 for CIFAR-10-LT, 9,754 instead of 10,847
  for CIFAR-100-LT). Defaults chosen on it never touch the test set."""
  cfg.data.n_max, cfg.data.val_per_class = VAL_SPLITS[cfg.data.name]
  return cfg


def finish(cfg, args: set[str], offline_folder: str | None = None):
  """What the config arguments switch, in the order that matters: the balanced teacher
  recipes, then `offline` (the baseline and teacher recipes key on cfg.data.name, so
  they come first), then `local`. Returns the locked config."""
  at_most_one(args, TEACHER_RECIPES, "teacher")
  for recipe in sorted(args & set(TEACHER_RECIPES)):
    teacher_recipe(cfg, recipe)
  if "val" in args:
    with_validation(cfg)
  if "offline" in args:
    offline(cfg, offline_folder)
  if "local" in args:
    local_mode(cfg)
  return cfg.lock()


def large_config(dataset: str, weight_decay: float, epochs: int = 90):
  """ResNet-50 -> ResNet-18 at 224 px on a streamed dataset: SGD 0.1, batch 256, cosine
  after 5 warm-up epochs; augmentation (random-resized crop, flip) happens in tf.data."""
  cfg = cifar_config(dataset, "resnet50", "resnet18", epochs=epochs)
  cfg.data.crop_pad = 0
  cfg.data.flip = False  # augmentation happens in the tf.data stream
  cfg.data.image_size = 224
  for role in (cfg.teacher, cfg.student):
    role.batch_size = 256
    role.optim = optim_config(name="sgd", lr=0.1, weight_decay=weight_decay,
                              schedule="cosine", warmup_epochs=5)
  return cfg


def local_mode(cfg, epochs: int = 2):
  """A few epochs with small batches: checks a config end to end in minutes on CPU."""
  for role in (cfg.teacher, cfg.student):
    role.epochs = epochs
    role.batch_size = 64
    role.optim.warmup_epochs = 0
    role.optim.step_epochs = ()
  cfg.student.distill_warmup_epochs = 0
  for hparams in cfg.methods.values():  # methods with a warm-up of their own
    if hparams.get("warmup_epochs", -1) > 0:
      hparams.warmup_epochs = 0
  cfg.eval_every_epochs = epochs
  cfg.checkpoint_every_epochs = epochs
  cfg.workdir += "_local"
  return cfg
