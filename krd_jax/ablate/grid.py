"""The grid of a sweep: "key=v1,v2 key2=v3" axes, typed by the base config's fields."""

from __future__ import annotations

import itertools
from typing import Any

import ml_collections

from krd_jax import config as config_lib

# Swept through their own flags (--seeds, --methods, --workdir), never through the grid.
_RESERVED_KEYS = {"seed": "--seeds", "student.method": "--methods",
                  "workdir": "--workdir", "teacher.checkpoint": "--config.teacher.checkpoint"}
_TRUE, _FALSE = ("true", "1", "yes"), ("false", "0", "no")

Grid = list[tuple[str, list[Any]]]


def _field(cfg: ml_collections.ConfigDict, key: str) -> Any:
  """The current value of dotted `key`, or a ValueError naming the valid keys there."""
  try:
    return config_lib.lookup(cfg, key)
  except ValueError as error:
    raise ValueError(f"grid key {key!r}: {error}") from None


def _typed(text: str, current: Any, key: str) -> Any:
  """`text` converted to the type of the field's current value."""
  try:
    if isinstance(current, bool):  # before int: bool is an int
      if text.lower() not in _TRUE + _FALSE:
        raise ValueError
      return text.lower() in _TRUE
    if isinstance(current, int):
      return int(text)
    if isinstance(current, float):
      return float(text)
  except ValueError:
    raise ValueError(f"grid key {key!r}: {text!r} is not of type {type(current).__name__} "
                     f"(the field's current value is {current!r})") from None
  if isinstance(current, str):
    return text
  if isinstance(current, ml_collections.ConfigDict):
    raise ValueError(f"grid key {key!r} is a section; sweep one of its fields: "
                     f"{', '.join(sorted(current.keys()))}")
  raise ValueError(f"grid key {key!r}: fields of type {type(current).__name__} cannot "
                   "be swept (only bool, int, float and str)")


def parse_grid(spec: str, base: ml_collections.ConfigDict) -> Grid:
  """'a.b=1,2 c=x,y' -> [('a.b', [1, 2]), ('c', ['x', 'y'])], typed by `base`.

  Raises:
    ValueError: malformed axis, repeated or reserved key, unknown key (the message
      lists the valid keys at that level) or a value of the wrong type.
  """
  grid: Grid = []
  for axis in spec.split():
    key, sep, values = axis.partition("=")
    if not sep or not key or not values:
      raise ValueError(f"grid axis {axis!r} is not of the form key=value1,value2,...")
    if key in _RESERVED_KEYS:
      raise ValueError(f"{key!r} cannot be swept in the grid; use {_RESERVED_KEYS[key]}")
    if key in dict(grid):
      raise ValueError(f"grid key {key!r} appears twice")
    current = _field(base, key)
    typed = [_typed(v, current, key) for v in values.split(",") if v]
    if len(set(typed)) != len(typed):
      raise ValueError(f"grid key {key!r} repeats a value: {values}")
    grid.append((key, typed))
  return grid


def cells(grid: Grid) -> list[dict[str, Any]]:
  """The cartesian product of the axes, first axis slowest; one empty cell if none."""
  keys = [k for k, _ in grid]
  return [dict(zip(keys, combo)) for combo in itertools.product(*(v for _, v in grid))]


def set_field(cfg: ml_collections.ConfigDict, key: str, value: Any) -> None:
  """Sets dotted `key` of a locked config (the config checks the type)."""
  *parents, leaf = key.split(".")
  node = cfg
  for part in parents:
    node = node[part]
  node[leaf] = value  # a locked ConfigDict checks the type here


