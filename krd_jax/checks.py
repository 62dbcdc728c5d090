"""The one-line refusal of bad input, and the typed value tests every layer shares.

A config value, a method's hyper-parameter or a data file that is not allowed raises
`InputError` before any work starts; its message is one line naming the key, the
value and what is allowed, which the CLI prints before exiting with status 2. The
config module, the methods and the data layer each check what they own with these.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Callable, Mapping


class InputError(ValueError):
  """Bad input (config or data); str() is one line naming the key and what is allowed."""


def fail(key: str, value: Any, allowed: str) -> None:
  """Raises the InputError for `config.<key>=<value>`."""
  raise InputError(f"config.{key}={value!r} is not allowed; allowed: {allowed}")


def is_int(value: Any) -> bool:
  return isinstance(value, int) and not isinstance(value, bool)


def is_number(value: Any) -> bool:
  """A finite int or float (bools are not numbers here)."""
  return (isinstance(value, (int, float)) and not isinstance(value, bool)
          and math.isfinite(value))


def in_range(value: Any, low: float | None = None, high: float | None = None, *,
             low_open: bool = False, high_open: bool = False) -> bool:
  """Whether `value` is a finite number in [low, high] (either end open on request)."""
  if not is_number(value):
    return False
  if low is not None and not (value > low if low_open else value >= low):
    return False
  return high is None or (value < high if high_open else value <= high)


def describe_range(low: float | None = None, high: float | None = None, *,
                   low_open: bool = False, high_open: bool = False) -> str:
  """'a number >= 0 and < 1' for the arguments of `in_range`."""
  parts = []
  if low is not None:
    parts.append(f"{'>' if low_open else '>='} {low:g}")
  if high is not None:
    parts.append(f"{'<' if high_open else '<='} {high:g}")
  return "a number " + " and ".join(parts) if parts else "a finite number"


# (hyper-parameters with defaults filled in, whether the run has a balanced validation
# split) -> None where a knob acts, else the setting that makes it act ("use_rrd=True").
ActsRule = Callable[[Mapping[str, Any], bool], "str | None"]


@dataclasses.dataclass(frozen=True)
class Param:
  """One setting (a config field or a method's hyper-parameter): its default, what it
  means, what is allowed and when it acts. Declared once; defaults, validation, the
  CLI's refusals and the docs all read it.

  A bool default allows True / False; `choices` a fixed set; a str default any string
  (non-empty with `nonempty`); a tuple default a tuple or list, a dict default a
  mapping (their items are checked where they are used: krd_jax.validate); an int default an integer within the optional
  bounds; otherwise a finite number within them. `acts` (an `ActsRule`, e.g.
  `methods.base.acts_with(use_rrd=True)`) says when the knob changes the run; None:
  always. An override or a sweep of a knob that would not act is refused
  (krd_jax.validate.check_knobs_act).
  """
  default: Any
  doc: str = ""
  low: float | None = None
  high: float | None = None
  low_open: bool = False
  high_open: bool = False
  choices: tuple[Any, ...] | None = None
  acts: ActsRule | None = None
  nonempty: bool = False
  # A knob added with a default that changes what earlier runs of its method computed: a
  # run folder from before it is another run (train/run_dir.only_new_defaults).
  changes_runs: bool = False

  def accepts(self, value: Any) -> bool:
    if self.choices is not None:
      return value in self.choices
    if isinstance(self.default, bool):
      return isinstance(value, bool)
    if isinstance(self.default, str):
      return isinstance(value, str) and bool(value or not self.nonempty)
    if isinstance(self.default, tuple):
      return isinstance(value, (tuple, list))
    if isinstance(self.default, dict):
      return hasattr(value, "keys")
    if is_int(self.default) and not is_int(value):
      return False
    return in_range(value, self.low, self.high, low_open=self.low_open,
                    high_open=self.high_open)

  def allowed(self) -> str:
    if self.choices is not None:
      return "one of " + ", ".join(map(str, self.choices))
    if isinstance(self.default, bool):
      return "True or False"
    if isinstance(self.default, str):
      return "a non-empty string" if self.nonempty else "a string"
    if isinstance(self.default, tuple):
      return "a tuple"
    if isinstance(self.default, dict):
      return "a mapping"
    described = describe_range(self.low, self.high, low_open=self.low_open,
                               high_open=self.high_open)
    return described.replace("a number", "an integer", 1) if is_int(
        self.default) else described
