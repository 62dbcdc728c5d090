"""Checks a run before it starts: bad input is refused before any work is done.

`check_run(cfg, command)` runs every check `runs.py` needs before it touches the
workdir: each config value against its allowed range, the global batch against the
device count, the method's hyper-parameters, a reused teacher against the configured
model and class count, and the files of a bring-your-own-data folder. The first
problem raises `InputError` (krd_jax.checks), whose message is one line naming the
key, the value and what is allowed; the CLI prints it and exits with status 2.

What is checked lives with what it protects: each method checks its own
hyper-parameters (krd_jax.methods), an image folder's files are checked by
`krd_jax.data.image_folder.check_image_folder`; this module walks the config and asks
them.
"""

from __future__ import annotations

import inspect
import logging
import os
from typing import Any, Callable

import jax
import ml_collections

from krd_jax import checks
from krd_jax import config as config_lib
from krd_jax import methods as methods_lib
from krd_jax import sharding
from krd_jax.configs import common as configs_common
from krd_jax.data import image_folder
from krd_jax.data import sources
from krd_jax.losses import registry
from krd_jax.models import registry as models
from krd_jax.train import checkpoints
from krd_jax.train import teacher as teacher_lib
from krd_jax.checks import InputError  # noqa: F401  (re-exported: callers catch it here)

log = logging.getLogger(__name__)

COMMANDS = ("demo", "teacher", "student")
# Datasets read from files under data_dir (the others default to tfds' own folder).
_NEEDS_DATA_DIR = ("image_folder", "imagenet_lt", "places_lt")
_fail = checks.fail
_get = config_lib.lookup
_is_int = checks.is_int


# ----------------------------------------------------------------------------- typed checks


def check_int(cfg, key: str, low: int, high: int | None = None) -> int:
  value = _get(cfg, key)
  if not _is_int(value) or value < low or (high is not None and value > high):
    _fail(key, value, f"an integer >= {low}" + (f" and <= {high}" if high is not None else ""))
  return value


def check_choice(cfg, key: str, choices) -> Any:
  value = _get(cfg, key)
  if value not in tuple(choices):
    _fail(key, value, "one of " + ", ".join(map(str, choices)))
  return value


def check_fields(cfg: ml_collections.ConfigDict, section: str | None = None) -> None:
  """Each field of `section` ("data", "teacher", ...; None: the run-wide fields) against
  its declaration in `config.fields()`, where its default, meaning and allowed values
  live; InputError on the first bad one."""
  for key, field in config_lib.fields().items():
    head, dot, _ = key.partition(".")
    if (head == section) if section else not dot:
      value = _get(cfg, key)
      if not field.accepts(value):
        _fail(key, value, field.allowed())


def device_count(cfg: ml_collections.ConfigDict) -> int:
  """Devices the run will use: `num_devices`, or every device JAX sees (0)."""
  visible = jax.device_count()
  check_int(cfg, "num_devices", 0, visible)
  if jax.process_count() > 1 and cfg.num_devices not in (0, visible):
    _fail("num_devices", cfg.num_devices, f"0 or {visible}: a job of "
          f"{jax.process_count()} processes uses every device of every process")
  return cfg.num_devices or visible


def check_distributed(cfg: ml_collections.ConfigDict) -> None:
  """The `distributed` section (see krd_jax.distributed); touches no device."""
  check_fields(cfg, "distributed")
  address = cfg.distributed.coordinator_address
  host, _, port = address.rpartition(":")
  if address and (not host or not port.isdigit() or not 0 < int(port) < 65536):
    _fail("distributed.coordinator_address", address, "'' or HOST:PORT of process 0 "
          "(e.g. 10.0.0.1:1234)")
  num_processes = cfg.distributed.num_processes
  check_int(cfg, "distributed.process_id", -1,
            num_processes - 1 if num_processes else None)


def check_config(cfg: ml_collections.ConfigDict, command: str) -> None:
  """Checks every config value `command` reads; raises InputError on the first bad one."""
  if command not in COMMANDS:
    raise InputError(f"command {command!r} is not allowed; allowed: one of "
                     f"{', '.join(COMMANDS)}")
  check_fields(cfg)  # the run-wide fields
  check_distributed(cfg)
  _check_data(cfg)
  devices = device_count(cfg)
  for role in roles_used(command):
    _check_role(cfg, role, devices)
  for method in methods_used(cfg, command):
    _check_validation_split(cfg, method)
    check_method_inputs(cfg, method)
  # Every method's values, used by this command or not: a bad value anywhere in a
  # config is a mistake worth hearing about before a long run.
  for method in cfg.methods:
    _check_method(cfg, method)


def methods_used(cfg: ml_collections.ConfigDict, command: str) -> list[str]:
  """The student methods `command` will train."""
  if command == "teacher":
    return []
  if command == "student":
    methods = [check_choice(cfg, "student.method", list(cfg.methods))]
  else:
    methods = list(cfg.demo_methods) if isinstance(cfg.demo_methods, (tuple, list)) else None
    if not methods or any(m not in cfg.methods for m in methods):
      _fail("demo_methods", cfg.demo_methods, "a non-empty tuple of methods from: "
            + ", ".join(cfg.methods) + " (on the command line: "
            "--config.demo_methods=\"('krd','kd')\"; a,b is one string)")
  return methods


def needs_teacher(cfg: ml_collections.ConfigDict, method: str) -> bool:
  """Whether a `method` student run of `cfg` reads a teacher (the method decides)."""
  return methods_lib.get(method).needs_teacher(cfg.methods[method].to_dict())


def roles_used(command: str) -> list[str]:
  """The role configs `command` reads (a student run may train its teacher first)."""
  return ["teacher"] if command == "teacher" else ["teacher", "student"]


def _check_data(cfg: ml_collections.ConfigDict) -> None:
  check_fields(cfg, "data")
  name = cfg.data.name
  if name in _NEEDS_DATA_DIR and not cfg.data.data_dir:
    _fail("data.data_dir", cfg.data.data_dir, f"the image root folder ({name} needs one)")
  for key in ("data_dir", "split_list_dir"):
    folder = cfg.data[key]
    if folder and not os.path.isdir(os.path.expanduser(folder)):
      command = key == "data_dir" and configs_common.extraction_command(folder)
      _fail(f"data.{key}", folder, "an existing folder" + (
          f" (the offline copy: extract its archive there, {command})" if command else ""))


def _check_role(cfg: ml_collections.ConfigDict, role: str, devices: int) -> None:
  """The role's fields, and what needs several of them or the devices."""
  check_fields(cfg, role)
  model = cfg[role].model
  kwargs = _get(cfg, f"{role}.model_kwargs")
  try:
    models.feature_dim(model, **kwargs.to_dict())
  except ValueError as error:
    raise InputError(f"config.{role}.model_kwargs={kwargs.to_dict()!r} is not allowed: "
                     f"{error}") from None
  epochs = cfg[role].epochs
  batch = _get(cfg, f"{role}.batch_size")
  ok, example = sharding.splits_evenly(batch, devices)
  if not ok:
    _fail(f"{role}.batch_size", batch, f"a positive multiple of the {devices} device(s) "
          f"the batch is split over (e.g. {example})")
  _check_optim(cfg, f"{role}.optim", epochs)
  if role == "teacher":
    _check_kwargs(cfg, "teacher.loss_kwargs", registry.TEACHER_LOSSES[cfg.teacher.loss], ())


def _check_optim(cfg: ml_collections.ConfigDict, key: str, epochs: int) -> None:
  """What the optimiser's fields need of each other and of the role's epochs."""
  check_int(cfg, f"{key}.warmup_epochs", 0, epochs)
  milestones = _get(cfg, f"{key}.step_epochs")
  if not isinstance(milestones, (tuple, list)) or not all(
      _is_int(e) and 0 < e < epochs for e in milestones):
    _fail(f"{key}.step_epochs", milestones, f"a tuple of epochs in [1, {epochs - 1}]")


def _check_kwargs(cfg, key: str, builder: Callable, extra: tuple[str, ...]) -> None:
  """Keys of `key` must be arguments of `builder` (after its counts argument)."""
  allowed = list(inspect.signature(builder).parameters)[1:] + list(extra)
  for name in _get(cfg, key):
    if name not in allowed:
      _fail(f"{key}.{name}", _get(cfg, key)[name], f"keys of {key}: " + ", ".join(allowed))


def _check_method(cfg: ml_collections.ConfigDict, method: str) -> None:
  """`methods.<method>` must be a registered method's section; it checks its values."""
  key = f"methods.{method}"
  if method not in methods_lib.names():
    _fail(key, _get(cfg, key).to_dict(), "methods named " + ", ".join(methods_lib.names()))
  methods_lib.get(method).check(_get(cfg, key).to_dict(), key)


def _check_validation_split(cfg: ml_collections.ConfigDict, method: str) -> None:
  """A method that fits something on the validation split needs one."""
  why = methods_lib.get(method).needs_validation(cfg.methods[method].to_dict())
  if why and not has_val_split(cfg):
    raise InputError(f"{why}, and config.data.val_per_class is 0 (no validation split): "
                     "set it > 0 (the CIFAR recipes' `val` argument does)")


def check_method_inputs(cfg: ml_collections.ConfigDict, method: str) -> None:
  """A method that reads stage maps needs models that offer them (not the MLP); one that
  reads sample indices needs a source with stable ones (in memory, not streamed)."""
  reads = methods_lib.get(method).reads(cfg.methods[method].to_dict())
  for role in ("student", "teacher"):
    offered = models.stage_names(cfg[role].model)
    missing = [name for name in reads[role] if name not in offered]
    if missing:
      raise InputError(
          f"student.method={method!r} reads the {role}'s stage maps {missing}, and "
          f"config.{role}.model={cfg[role].model!r} offers "
          f"{list(offered) if offered else 'none'}; allowed: a {role} model with stage "
          "maps (the CIFAR ResNets), or another method")
  if reads["indices"] and cfg.data.streaming:
    raise InputError(
        f"student.method={method!r} reads each example's index (its memory bank is keyed "
        "by it), and config.data.streaming=True gives no stable indices; allowed: "
        "streaming=False, or another method")


def has_val_split(cfg: ml_collections.ConfigDict) -> bool:
  """Whether the run has a balanced validation split (what fitted knobs need)."""
  return bool(cfg.data.val_per_class)


def check_knobs_act(cfg: ml_collections.ConfigDict, methods: list[str],
                    keys: list[str]) -> None:
  """Refuses an override (or a sweep axis) of a method knob that a run of `methods`
  with this resolved config leaves without effect: InputError naming the knob and the
  setting that makes it act. Keys outside `methods.<one of methods>.*` pass.

  Example: `--config.methods.krd.lam=0.3` while `methods.krd.use_rrd` is False.
  """
  for key in keys:
    section, _, name = key.partition(".")[2].partition(".")
    if not key.startswith("methods.") or section not in methods:
      continue
    method = methods_lib.get(section)
    if name not in method.params:
      continue
    # A bad value is the first thing to hear about, whether the knob acts or not.
    hparams = method.check(cfg.methods[section].to_dict(), f"methods.{section}")
    setting = method.idle_unless(name, hparams, has_val_split(cfg))
    if setting:
      raise InputError(f"config.{key}={_get(cfg, key)!r} has no effect in this run: it "
                       f"acts only with methods.{section}.{setting}")


# ----------------------------------------------------------------------------- teacher


def check_teacher(cfg: ml_collections.ConfigDict, command: str) -> None:
  """A teacher to reuse must exist and match the configured model and class count.

  Checks `teacher.checkpoint` when set (and a student method needs a teacher),
  else a complete teacher already saved in <workdir>/teacher.
  """
  if command != "teacher" and not any(
      needs_teacher(cfg, m) for m in methods_used(cfg, command)):
    return
  given = cfg.teacher.checkpoint
  run_dir = given or os.path.join(cfg.workdir, "teacher")
  meta = checkpoints.read_teacher_meta(run_dir)
  if meta is None:
    if given:
      method = (f"student.method={cfg.student.method!r}" if command == "student"
                else "the demo students")
      _fail("teacher.checkpoint", given,
            f"a teacher run folder holding teacher.json ({method} needs a teacher and "
            "this folder holds no complete one), or '' to train one in <workdir>/teacher")
    return
  if not given:  # our own folder: only the configuration that trained it reuses it
    teacher_lib.check_own_teacher(cfg, run_dir)
  mismatch = teacher_lib.meta_mismatch(meta, teacher_lib.expected_meta(
      cfg.teacher, known_num_classes(cfg)))
  if mismatch is None:
    return
  if given:
    _fail("teacher.checkpoint", given, f"a teacher with {mismatch}")
  _fail("workdir", cfg.workdir, f"a workdir whose saved teacher matches config.teacher "
        f"(it needs {mismatch}); use another workdir")


def known_num_classes(cfg: ml_collections.ConfigDict) -> int | None:
  """The dataset's class count where it is known without decoding anything."""
  if cfg.data.name == "image_folder":
    try:
      return len(image_folder.list_image_folder(os.path.expanduser(cfg.data.data_dir))[1])
    except ValueError:
      return None
  return sources.DATASET_DEFAULTS[cfg.data.name].get("num_classes")


# ----------------------------------------------------------------------------- all


def check_run(cfg: ml_collections.ConfigDict, command: str) -> None:
  """Every check before `command` may start: config, reused teacher, data files."""
  check_config(cfg, command)
  check_teacher(cfg, command)
  if cfg.data.name == "image_folder":
    image_folder.check_image_folder(cfg.data.data_dir)
