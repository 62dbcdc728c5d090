"""Named points of a run where code outside the library may look in.

The loop and the checkpoint code call `reached(site)` at a few points; a normal run
registers no hook, so each call is a loop over an empty list. The reliability tests
register one (`krd_jax.testing.faults`) to kill, preempt or break a run on cue;
a profiler or a custom logger could do the same.

Sites: "step" (before each training step; a hook may return a replacement state),
"eval" (before each evaluation inside fit), "saved" (after a checkpoint save
returned), "teacher_final" (between the teacher's final variables and teacher.json),
"student_final" (before a student run writes final.json).
"""

from __future__ import annotations

from typing import Any, Callable

SITES = ("step", "eval", "saved", "teacher_final", "student_final")
Hook = Callable[[str, Any], Any]

_hooks: list[Hook] = []


def add(hook: Hook) -> None:
  """Registers hook(site, state) -> replacement state or None (once per hook)."""
  if hook not in _hooks:
    _hooks.append(hook)


def remove(hook: Hook) -> None:
  if hook in _hooks:
    _hooks.remove(hook)


def reached(site: str, state: Any = None) -> Any:
  """Runs the registered hooks at `site`; returns `state`, or a hook's replacement."""
  for hook in _hooks:
    replaced = hook(site, state)
    if replaced is not None:
      state = replaced
  return state
