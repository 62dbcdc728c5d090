"""The one-line refusal of bad input, and the typed value tests every layer shares.

A config value, a method's hyper-parameter or a data file that is not allowed raises
`InputError` before any work starts; its message is one line naming the key, the
value and what is allowed, which the CLI prints before exiting with status 2. The
config module, the methods and the data layer each check what they own with these.
"""

from __future__ import annotations

import math
from typing import Any


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
