"""The run configuration: one ml_collections ConfigDict describes a whole run.

The CLI, the notebook and the ablation runner all start from `default_config()` (the
embedded digits_lt setup) and override fields; experiment files in
`krd_jax/configs/` do the same. ConfigDicts are locked, so a typo in an override
is an error, and typed, so a string where a float belongs is an error. Values are
checked against their allowed ranges by `krd_jax.validate` before a run starts.
"""

from __future__ import annotations

import difflib
import re
from typing import Any

import ml_collections

from krd_jax import checks
from krd_jax import distributed
from krd_jax import methods

def optim_config(**overrides) -> ml_collections.ConfigDict:
  """Optimiser and schedule of one training role (teacher or student)."""
  cfg = ml_collections.ConfigDict({
      "name": "sgd",           # sgd | adam | adamw
      "lr": 0.1,
      "momentum": 0.9,
      "nesterov": False,
      "weight_decay": 5e-4,
      "schedule": "cosine",    # cosine | step | constant
      "warmup_epochs": 0,
      "step_epochs": (),       # epochs where a step schedule multiplies lr by step_gamma
      "step_gamma": 0.1,
  })
  cfg.update(overrides)
  return cfg


def default_config() -> ml_collections.ConfigDict:
  """The embedded default: digits_lt (sklearn digits, IF=50), MLP 256 -> MLP 32.

  Runs the whole demo (teacher plus five students) in about a minute on 2 CPU cores.
  """
  cfg = ml_collections.ConfigDict()
  cfg.workdir = "runs/digits_lt"
  cfg.seed = 0
  cfg.num_devices = 0            # 0: every device JAX sees
  cfg.compute_dtype = "float32"  # or "bfloat16" (parameters stay float32)

  cfg.data = ml_collections.ConfigDict({
      "name": "digits_lt",
      "imbalance": 50.0,
      "profile": "exp",
      "seed": 0,
      "val_per_class": 0,      # balanced validation images per class (model selection)
      "n_max": 0,               # head-class images; 0: the dataset's default
      "image_size": 0,          # streaming sources' output side; 0: their default
      "streaming": False,       # image_folder only: stream files via tf.data, no subsampling
      "data_dir": "",
      "split_list_dir": "",
      "cache_dir": "",
      "crop_pad": 0,            # random-crop padding in pixels (4 for CIFAR)
      "flip": False,            # horizontal flips (never for digits)
      "group_split": "tercile",  # groups in reports: "absolute" or "tercile"
  })

  cfg.teacher = ml_collections.ConfigDict({
      "model": "mlp",
      "model_kwargs": ml_collections.ConfigDict({"width": 256}),
      "loss": "ce",
      "loss_kwargs": ml_collections.ConfigDict(),
      "drw_epoch": -1,          # epoch from which class-balanced weights apply; -1 never
      "epochs": 150,
      "batch_size": 64,
      "optim": optim_config(name="adam", lr=1e-3, weight_decay=0.0, schedule="constant"),
      "checkpoint": "",         # a saved teacher run dir to reuse; "" trains one
  })

  cfg.student = ml_collections.ConfigDict({
      "model": "mlp",
      "model_kwargs": ml_collections.ConfigDict({"width": 32}),
      "method": "krd",
      "distill_warmup_epochs": 0,
      "epochs": 150,
      "batch_size": 64,
      "optim": optim_config(name="adam", lr=1e-3, weight_decay=0.0, schedule="constant"),
  })
  # One section per registered student method (krd_jax.methods): its defaults.
  cfg.methods = ml_collections.ConfigDict(methods.defaults())

  # logit_adjusted: the no-teacher bar a distillation method must beat (DESIGN.md s5).
  cfg.demo_methods = ("ce", "kd", "bkd", "dkd", "ltkd", "krd", "logit_adjusted")
  cfg.eval_every_epochs = 10
  cfg.checkpoint_every_epochs = 50
  cfg.checkpoint_every_steps = 0  # > 0: checkpoint every this many steps instead
  cfg.keep_checkpoints = 2
  cfg.log_every_steps = 50
  cfg.progress = True
  # Multi-process jobs (TPU pods, SLURM): see krd_jax/distributed.py.
  cfg.distributed = distributed.defaults()
  return cfg.lock()


# A command-line override, --config.a.b=value (or --config.a.b value, --noconfig.a.b).
OVERRIDE_FLAG = re.compile(r"^--?(?:no)?config\.([^=]+)(=.*)?$")


def overridden_keys(argv: list[str]) -> list[str]:
  """The config keys a command line overrides: ["student.epochs", ...]."""
  return [m.group(1) for m in map(OVERRIDE_FLAG.match, argv) if m]


def lookup(cfg: ml_collections.ConfigDict, key: str) -> Any:
  """The value at dotted `key` ("methods.krd.lam"): the one walker of config keys.

  Raises:
    checks.InputError: a part of the key does not exist; the message names the
      closest key and lists the keys allowed at that level.
  """
  node, walked = cfg, []
  for part in key.split("."):
    keys = list(node.keys()) if isinstance(node, ml_collections.ConfigDict) else []
    if part not in keys:
      parent = ".".join(["config", *walked])
      close = difflib.get_close_matches(part, keys, n=1)
      hint = f" (did you mean {'.'.join([*walked, close[0]])}?)" if close else ""
      allowed = ", ".join(sorted(keys)) if keys else "none (it is a value, not a section)"
      raise checks.InputError(f"unknown config key config.{key}{hint}; allowed keys "
                              f"under {parent}: {allowed}")
    node, walked = node[part], [*walked, part]
  return node
