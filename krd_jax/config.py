"""The run configuration: one ml_collections ConfigDict describes a whole run.

The CLI, the notebook and the ablation runner all start from `default_config()` (the
embedded digits_lt setup) and override fields; experiment files in
`krd_jax/configs/` do the same. ConfigDicts are locked, so a typo in an override
is an error, and typed, so a string where a float belongs is an error. Values are
checked against their allowed ranges by `krd_jax.validate` before a run starts.
"""

from __future__ import annotations

import dataclasses
import difflib
import re
from typing import Any

import ml_collections

from krd_jax import checks
from krd_jax import distributed
from krd_jax import methods
from krd_jax.data import profiles
from krd_jax.data import sources
from krd_jax.losses import registry as losses
from krd_jax.models import registry as models
from krd_jax.train import metrics
from krd_jax.train import optim

Param = checks.Param

# Every field of a run's config: its default, its meaning and what is allowed, declared
# once. `default_config()` is built from here, `krd_jax.validate` checks each value
# against its Param (and adds the checks that need several fields or the machine:
# batch sizes against the devices, milestones against the epochs, files on disk), and
# docs/config.md is written from here (`fields_markdown`). Method knobs live with their
# methods (`methods.<name>`).
RUN_FIELDS = {
    "workdir": Param("runs/digits_lt", "where the teacher and the student runs are "
                     "written", nonempty=True),
    "seed": Param(0, "seeds the model's initialisation, the data order and the "
                  "augmentation (the teacher of a sweep: the base config's)", low=0),
    "num_devices": Param(0, "devices the batch is split over; 0: every device JAX sees "
                         "(at most those)", low=0),
    "compute_dtype": Param("float32", "compute dtype (parameters stay float32)",
                           choices=("float32", "bfloat16")),
}

DATA_FIELDS = {
    "name": Param("digits_lt", "the data source", choices=sources.DATASET_NAMES),
    "imbalance": Param(50.0, "imbalance factor: largest / smallest class count", low=1.0),
    "profile": Param("exp", "long-tail profile: exponential or step",
                     choices=profiles.PROFILES),
    "seed": Param(0, "which images each class keeps (the subsampling's seed)", low=0),
    "val_per_class": Param(0, "balanced validation images per class, kept out of "
                           "training (model selection, fitted tau); 0: none", low=0),
    "n_max": Param(0, "head-class images; 0: the dataset's default", low=0),
    "image_size": Param(0, "streaming sources' output side; 0: their default", low=0),
    "streaming": Param(False, "image_folder only: stream files via tf.data, no "
                       "subsampling"),
    "data_dir": Param("", "the image root folder (image_folder, imagenet_lt, places_lt)"),
    "split_list_dir": Param("", "folder of ImageNet-LT / Places-LT split lists"),
    "cache_dir": Param("", "where decoded arrays are cached; '': ~/.cache/krd_jax"),
    "crop_pad": Param(0, "random-crop padding in pixels (4 for CIFAR)", low=0),
    "flip": Param(False, "horizontal flips (never for digits)"),
    "group_split": Param("tercile", "groups in reports: absolute (many / medium / few "
                         "shots) or tercile (classes ranked by count)",
                         choices=metrics.GROUP_SPLITS),
}

OPTIM_FIELDS = {
    "name": Param("sgd", "optimiser", choices=optim.OPTIMIZERS),
    "lr": Param(0.1, "peak learning rate", low=0.0, low_open=True),
    "momentum": Param(0.9, "SGD momentum", low=0.0, high=1.0, high_open=True),
    "nesterov": Param(False, "Nesterov momentum"),
    "weight_decay": Param(5e-4, "weight decay", low=0.0),
    "schedule": Param("cosine", "learning-rate schedule", choices=optim.SCHEDULES),
    "warmup_epochs": Param(0, "linear learning-rate warm-up (at most the role's "
                           "epochs)", low=0),
    "step_epochs": Param((), "epochs where a step schedule multiplies lr by step_gamma "
                         "(each in [1, epochs - 1])"),
    "step_gamma": Param(0.1, "the step schedule's factor", low=0.0, low_open=True),
}


def role_fields(role: str, model: str, width: int) -> dict[str, Param]:
  """The fields of the teacher or the student section (models and defaults differ)."""
  fields = {
      "model": Param(model, "the model (krd_jax.models)", choices=tuple(models.model_names())),
      "model_kwargs": Param({"width": width}, "the model's arguments (e.g. width)"),
  }
  if role == "teacher":
    fields.update(
        loss=Param("ce", "the teacher's loss", choices=tuple(losses.teacher_losses())),
        loss_kwargs=Param({}, "the teacher loss's arguments"),
        drw_epoch=Param(-1, "epoch from which class-balanced weights apply; -1 never",
                        low=-1))
  else:
    fields.update(
        method=Param("krd", "the student method (one of the `methods` sections)"),
        distill_warmup_epochs=Param(0, "epochs the distillation terms ramp over (a "
                                    "method's own warmup_epochs, if set, wins)", low=0))
  fields.update(
      epochs=Param(150, "training epochs", low=1),
      batch_size=Param(64, "global batch (a multiple of the devices)", low=1))
  if role == "teacher":
    fields["checkpoint"] = Param("", "a saved teacher run folder to reuse; '' trains one "
                                 "in <workdir>/teacher")
  return fields


ROLE_OPTIM = {"name": "adam", "lr": 1e-3, "weight_decay": 0.0, "schedule": "constant"}

SCHEDULE_FIELDS = {
    "demo_methods": Param(("ce", "kd", "bkd", "dkd", "ltkd", "krd", "logit_adjusted"),
                          "the demo's students (logit_adjusted: the no-teacher bar a "
                          "distillation method must beat)"),
    "eval_every_epochs": Param(10, "evaluate every this many epochs", low=1),
    "checkpoint_every_epochs": Param(50, "checkpoint every this many epochs", low=1),
    "checkpoint_every_steps": Param(0, "> 0: checkpoint every this many steps instead",
                                    low=0),
    "keep_checkpoints": Param(2, "latest checkpoints kept (plus the best)", low=1),
    "log_every_steps": Param(50, "log train metrics every this many steps", low=1),
    "progress": Param(True, "progress bars"),
}


def fields() -> dict[str, Param]:
  """Every config field but the method knobs, by dotted key ("teacher.optim.lr")."""
  out = dict(RUN_FIELDS)
  out.update({f"data.{k}": p for k, p in DATA_FIELDS.items()})
  for role, model, width in (("teacher", "mlp", 256), ("student", "mlp", 32)):
    for key, param in role_fields(role, model, width).items():
      out[f"{role}.{key}"] = param
      if key == "batch_size":  # the optimiser section follows the batch
        out.update({f"{role}.optim.{k}": (dataclasses.replace(p, default=ROLE_OPTIM[k])
                                          if k in ROLE_OPTIM else p)
                    for k, p in OPTIM_FIELDS.items()})
  out.update(SCHEDULE_FIELDS)
  out.update({f"distributed.{k}": p for k, p in distributed.FIELDS.items()})
  return out


def fields_markdown() -> str:
  """docs/config.md: every field and every method knob, with default, allowed values,
  meaning and (knobs) when it acts. Regenerate with `python -m krd_jax.config`."""
  def row(key, p):
    default = "''" if p.default == "" else repr(p.default)
    return f"| `{key}` | `{default}` | {p.allowed()} | {p.doc} |"

  lines = ["# Config fields", "",
           "Every field of a run's config (`krd_jax.config.fields()`, where each is "
           "declared once), its default (the embedded digits_lt setup; recipes in "
           "`krd_jax/configs/` change some), what is allowed and what it means. Override "
           "any on the command line: `--config.<key>=VALUE`. Written by "
           "`python -m krd_jax.config > docs/config.md`; a test keeps it current.", "",
           "| key | default | allowed | meaning |", "|---|---|---|---|"]
  lines += [row(k, p) for k, p in fields().items()]
  lines += ["", "## Method knobs (`methods.<method>.<knob>`)", "",
            "Declared by each method (`krd_jax/methods/<method>.py`). A knob that acts "
            "only with another setting says so; overriding or sweeping it without that "
            "setting is refused (exit 2). The last column answers for a run with a "
            "validation split.", ""]
  for name in methods.names():
    method = methods.get(name)
    lines += [f"### {name} ({method.title})", "",
              "| knob | default | allowed | meaning | acts at the defaults? |",
              "|---|---|---|---|---|"]
    for key, param in method.params.items():
      idle = method.idle_unless(key, {}, has_val_split=True)
      lines.append(row(key, param) + (f" only with {idle} |" if idle else " yes |"))
    lines.append("")
  return "\n".join(lines)


def optim_config(**overrides) -> ml_collections.ConfigDict:
  """Optimiser and schedule of one training role (teacher or student)."""
  cfg = ml_collections.ConfigDict({k: p.default for k, p in OPTIM_FIELDS.items()})
  cfg.update(overrides)
  return cfg


def _section(values: dict) -> ml_collections.ConfigDict:
  """Nested ConfigDicts from {dotted key: value}."""
  tree: dict = {}
  for key, value in values.items():
    *parents, leaf = key.split(".")
    node = tree
    for part in parents:
      node = node.setdefault(part, {})
    node[leaf] = ml_collections.ConfigDict(value) if isinstance(value, dict) else value
  return ml_collections.ConfigDict(tree)


def default_config() -> ml_collections.ConfigDict:
  """The embedded default: digits_lt (sklearn digits, IF=50), MLP 256 -> MLP 32.

  Runs the whole demo (teacher plus seven students) in about a minute on 2 CPU cores.
  Built from `fields()`, with one section per registered student method
  (krd_jax.methods): its defaults.
  """
  values = {k: p.default for k, p in fields().items()}
  at = list(values).index("demo_methods")
  ordered = list(values.items())
  ordered.insert(at, ("methods", methods.defaults()))
  return _section(dict(ordered)).lock()


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


if __name__ == "__main__":
  print(fields_markdown())
