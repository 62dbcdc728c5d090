"""The embedded default: scikit-learn digits made long-tailed (IF=50), MLP 256 -> MLP 32.

  python -m krd_jax demo                                   # teacher + 7 students
  python -m krd_jax student --config.student.method=kd     # one student
  python -m krd_jax demo --config=digits_lt:local          # 20 epochs per model

Expected runtime: about 30 s for the whole demo on 2 CPU cores (compilation included),
as long in local mode (compilation dominates; for CI and smoke tests).
"""

from krd_jax.config import default_config


def get_config(arg: str = ""):
  cfg = default_config().unlock()
  # 20 balanced validation images per class, from the digits the long-tail profile left
  # out (the training set is unchanged): checkpoints and KRDistill's tau are chosen on
  # them, never on the test set.
  cfg.data.val_per_class = 20
  if arg == "local":
    cfg.teacher.epochs = 20
    cfg.student.epochs = 20
    cfg.eval_every_epochs = 10
    cfg.checkpoint_every_epochs = 10
    cfg.workdir = "runs/digits_lt_local"
  elif arg:
    raise ValueError(f"unknown config argument {arg!r}; allowed: '' or 'local'")
  return cfg.lock()
