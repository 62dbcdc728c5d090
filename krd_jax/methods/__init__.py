"""Student methods, one module each; the registry every other layer asks.

Each module declares one `Method` (krd_jax.methods.base) as `METHOD`:
hyper-parameters with defaults and ranges, whether it needs a teacher, its per-run
constants, and the objective it builds from `krd_jax.losses`. Nothing else in the
library lists method names: the config's `methods.*` defaults, validation, the train
step, seed groups, the CLI, the tables and `krd_jax.ablate` all come here. Adding a method
is one new module here (found and registered on import) and its tests, or
`register(Method(...))` from your own code before the config is built.

Example:
  from krd_jax import methods
  objective = methods.objective("kd", counts, temperature=4.0)
  loss, metrics = objective.fn(methods.StudentOutputs(student_logits=z_s,
      teacher_logits=z_t, labels=y), distill_scale=1.0)
"""

from __future__ import annotations

import importlib
import pkgutil
from typing import Any

from krd_jax.methods.base import Method
from krd_jax.methods.base import Param
from krd_jax.methods.base import RunContext
from krd_jax.methods.base import StudentObjective
from krd_jax.methods.base import StudentOutputs

_REGISTRY: dict[str, Method] = {}


def register(method: Method, replace: bool = False) -> Method:
  """Adds `method` to the registry (ValueError if its name is taken, unless replace)."""
  if method.name in _REGISTRY and not replace:
    raise ValueError(f"student method {method.name!r} is already registered")
  _REGISTRY[method.name] = method
  return method


def unregister(name: str) -> None:
  """Removes a registered method (tests that register a toy one clean up with this)."""
  _REGISTRY.pop(name, None)


def names() -> list[str]:
  """The registered method names, sorted."""
  return sorted(_REGISTRY)


def get(name: str) -> Method:
  """The registered method `name`, or ValueError listing the allowed names."""
  try:
    return _REGISTRY[name]
  except KeyError:
    raise ValueError(f"unknown student method {name!r}; allowed: {names()}") from None


def display_name(name: str) -> str:
  """A method as tables print it: its paper name, with the config name beside it where
  the two differ ("KRDistill (krd)", "KD", "logit-adjusted CE (logit_adjusted)")."""
  title = get(name).title
  same = title.lower().replace(" ", "_").replace("-", "_") == name
  return title if same else f"{title} ({name})"


def defaults() -> dict[str, dict[str, Any]]:
  """name -> {hyper-parameter: default}: the config's `methods` section."""
  return {name: _REGISTRY[name].defaults() for name in names()}


def objective(name: str, counts: Any, **kwargs: Any) -> StudentObjective:
  """Builds method `name`'s objective for training class counts [C].

  Args:
    name: one of `names()`.
    counts: training images per class [C].
    **kwargs: hyper-parameters (defaults from the method's `params`) and per-run
      constants (KRDistill: `anchors` [D, C] and `center` [d]).

  Returns:
    A `StudentObjective`.

  Raises:
    ValueError: unknown name or argument (the message lists the allowed ones), a
      value out of range (`checks.InputError`), bad counts or missing constants.
  """
  method = get(name)
  hparams = {k: v for k, v in kwargs.items() if k in method.params}
  constants = {k: v for k, v in kwargs.items() if k not in method.params}
  return method.objective(counts, hparams, constants)


def _register_builtin_methods() -> None:
  """Registers the `METHOD` of every module in this package (but base): a new method
  is a new module, nothing else to edit."""
  for info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
    if info.name != "base":
      register(importlib.import_module(f"{__name__}.{info.name}").METHOD)


_register_builtin_methods()

__all__ = ["Method", "Param", "RunContext", "StudentObjective", "StudentOutputs",
           "defaults", "get", "names", "objective", "register", "unregister"]
