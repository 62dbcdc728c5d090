"""Shared pieces of the CIFAR / ImageNet configs: the CIFAR recipe and config args."""

from krd_jax.config import default_config, optim_config


def parse_args(arg: str, allowed: tuple[str, ...]) -> set[str]:
  """'local,offline' -> {'local', 'offline'}; unknown words are errors."""
  words = {w for w in arg.split(",") if w}
  unknown = words - set(allowed)
  if unknown:
    raise ValueError(f"unknown config argument(s) {sorted(unknown)}; allowed: {allowed}")
  return words


def cifar_config(dataset: str, teacher: str, student: str, epochs: int = 200):
  """The LDAM-DRW / mdistiller-style CIFAR recipe: SGD 0.1 (0.05 for students),
  momentum 0.9, weight decay 5e-4, batch 128, 5 warm-up epochs, lr x0.1 at 80% and
  90% of training, random crop (pad 4) and flip, DKD-style 20-epoch distillation
  warm-up."""
  cfg = default_config().unlock()
  cfg.workdir = f"runs/{dataset}_{teacher}_{student}"
  cfg.data.name = dataset
  cfg.data.imbalance = 100.0
  cfg.data.crop_pad = 4
  cfg.data.flip = True
  cfg.data.group_split = "absolute"
  milestones = (int(0.8 * epochs), int(0.9 * epochs))
  for role, model, lr in ((cfg.teacher, teacher, 0.1), (cfg.student, student, 0.05)):
    role.model = model
    role.model_kwargs = {}
    role.epochs = epochs
    role.batch_size = 128
    role.optim = optim_config(name="sgd", lr=lr, weight_decay=5e-4, schedule="step",
                              warmup_epochs=5, step_epochs=milestones, step_gamma=0.1)
  cfg.student.distill_warmup_epochs = 20
  cfg.eval_every_epochs = 10
  cfg.checkpoint_every_epochs = 10
  cfg.log_every_steps = 100
  return cfg


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
  cfg.eval_every_epochs = epochs
  cfg.checkpoint_every_epochs = epochs
  cfg.workdir += "_local"
  return cfg
