"""The recipes that ship with krd_jax: one ml_collections config file per dataset.

  python -m krd_jax demo --config=cifar10_lt:offline,local   # a shipped recipe by name
  python -m krd_jax demo --config=my_config.py:ARG           # or any config file

In Python (a notebook, your own code):

  from krd_jax import configs
  cfg = configs.get("cifar100_lt:offline,local")   # a locked ConfigDict

Each recipe module has `get_config(arg)` (ml_collections' convention) and, at the top,
its commands, arguments and expected runtime. `common` holds what they share.
"""

from __future__ import annotations

import importlib
import os
import pkgutil

import ml_collections

DEFAULT = "digits_lt"  # the embedded default: the demo runs it with no --config
_NOT_RECIPES = ("common",)


def names() -> tuple[str, ...]:
  """The shipped recipes, sorted ("cifar100_lt", "cifar10_lt", "digits_lt", ...)."""
  return tuple(sorted(m.name for m in pkgutil.iter_modules(__path__)
                      if m.name not in _NOT_RECIPES and not m.name.startswith("_")))


def path(name: str) -> str:
  """The file of the shipped recipe `name` (inside the installed package)."""
  if name not in names():
    raise ValueError(f"no shipped recipe {name!r}; shipped recipes: {', '.join(names())}")
  return os.path.join(os.path.dirname(os.path.abspath(__file__)), f"{name}.py")


def resolve(spec: str) -> str:
  """'NAME[:ARG]' (a shipped recipe) or 'FILE[:ARG]' -> 'FILE[:ARG]' for config_flags.

  A spec is a file when its part before ':' is an existing file or ends in '.py' (a
  folder of the same name, such as runs/digits_lt, is not a config); a '.py' file
  that does not exist but is named like a shipped recipe (an old
  experiments/configs/ path) is refused with the name to use instead.

  Raises:
    ValueError: neither a file nor a shipped recipe (one line naming the recipes).
  """
  head, sep, arg = spec.partition(":")
  if os.path.isfile(head):
    return spec
  stem = os.path.splitext(os.path.basename(head))[0]
  if head.endswith(".py"):
    if stem in names():
      raise ValueError(f"config file {head} does not exist; the recipe ships with "
                       f"krd_jax: --config={stem}{sep}{arg}")
    return spec  # config_flags reports the missing file
  if head in names():
    return path(head) + sep + arg
  raise ValueError(f"--config={spec}: no such file and no shipped recipe {head!r}; "
                   f"allowed: a config file (FILE[:ARG]) or one of {', '.join(names())}")


def resolve_argv(argv: list[str]) -> list[str]:
  """argv with the value of --config (=VALUE or a separate argument) resolved."""
  out, i = list(argv), 0
  while i < len(out):
    arg = out[i]
    if arg.startswith(("--config=", "-config=")):
      flag, value = arg.split("=", 1)
      out[i] = f"{flag}={resolve(value)}"
    elif arg in ("--config", "-config") and i + 1 < len(out):
      out[i + 1] = resolve(out[i + 1])
      i += 1
    i += 1
  return out


def get(spec: str = DEFAULT) -> ml_collections.ConfigDict:
  """The config of a shipped recipe ('NAME[:ARG]'), as `--config=NAME:ARG` gives it."""
  name, _, arg = spec.partition(":")
  path(name)  # a clear error for a misspelt name
  return importlib.import_module(f"{__name__}.{name}").get_config(arg)
