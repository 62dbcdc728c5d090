"""Fault injection for the reliability tests: kill, preempt or break a run on cue.

Nothing here runs in a normal run: `install()` wires it in, through the run's hooks
(`krd_jax.train.hooks`) and two Orbax save points, and only
`python -m krd_jax.testing.run_with_faults` and the tests call it. Once installed it
acts on the environment variable `KRD_JAX_FAULT`, a comma-separated
list of `action@site:n` directives: do `action` the n-th time this process reaches
`site` (counting from 1). Sites:

  step          before each training step (fit)
  eval          before each evaluation inside fit
  save_write    inside a checkpoint save, once Orbax has written the arrays to its
                temporary folder but before the folder is committed
  save_commit   inside a checkpoint save, just before Orbax renames the temporary
                folder into place
  saved         right after a checkpoint save returned
  teacher_final between writing the teacher's final variables and teacher.json
  student_final before a student run writes final.json

Actions:

  kill    SIGKILL this process (nothing is flushed, as on a power cut or OOM kill)
  term    send this process SIGTERM (how preemption arrives)
  enospc  raise OSError(ENOSPC), as a full disk would
  nan     (step only) make the next step's parameters NaN, so its loss is NaN
  slow    (any site) sleep n milliseconds every time the site is reached

Example: `KRD_JAX_FAULT=kill@save_write:2` kills the run during its second save.
"""

from __future__ import annotations

import collections
import errno
import os
import signal
import time

ENV = "KRD_JAX_FAULT"
SITES = ("step", "eval", "save_write", "save_commit", "saved", "teacher_final",
         "student_final")
ACTIONS = ("kill", "term", "enospc", "nan", "slow")

_counts: collections.Counter = collections.Counter()
_parsed: tuple[str, list[tuple[str, str, int]]] = ("", [])
_orbax_hooked = False


def install() -> None:
  """Wires fault injection into this process (idempotent)."""
  from krd_jax.train import hooks  # pylint: disable=g-import-not-at-top
  hooks.add(_run_hook)
  _hook_orbax()


def _run_hook(site: str, state):
  """The `krd_jax.train.hooks` hook: a due fault at `site`; NaN parameters for "nan"."""
  if point(site) == "nan":
    import jax  # pylint: disable=g-import-not-at-top
    import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
    # Keeps the shardings; the next loss is NaN.
    return state.replace(params=jax.tree.map(lambda x: x * jnp.nan, state.params))
  return None


def _directives() -> list[tuple[str, str, int]]:
  """The parsed `KRD_JAX_FAULT` (re-parsed, and counts reset, when it changes)."""
  global _parsed
  spec = os.environ.get(ENV, "")
  if spec != _parsed[0]:
    out = []
    for item in filter(None, (s.strip() for s in spec.split(","))):
      action, _, rest = item.partition("@")
      site, _, n = rest.partition(":")
      if action not in ACTIONS or site not in SITES or not n.isdigit():
        raise ValueError(f"{ENV}: bad directive {item!r}; expected action@site:n with "
                         f"action in {ACTIONS} and site in {SITES}")
      out.append((action, site, int(n)))
    _parsed = (spec, out)
    _counts.clear()
  return _parsed[1]


def active() -> bool:
  return bool(os.environ.get(ENV))


def reset() -> None:
  """Forgets the counts (in-process tests that reuse a directive call this)."""
  global _parsed
  _parsed = ("", [])
  _counts.clear()


def point(site: str) -> str | None:
  """Marks that the run reached `site`; performs a due fault.

  Returns:
    "nan" when the caller must poison its state here, else None (kill, term,
    enospc and slow are carried out here).
  """
  if not os.environ.get(ENV):
    return None
  directives = _directives()
  _counts[site] += 1
  result = None
  for action, where, n in directives:
    if where != site:
      continue
    if action == "slow":
      time.sleep(n / 1000)
    elif _counts[site] == n:
      result = _perform(action, site) or result
  return result


def _perform(action: str, site: str) -> str | None:
  if action == "kill":
    os.kill(os.getpid(), signal.SIGKILL)
    time.sleep(60)  # SIGKILL is asynchronous; never run on past the kill point.
  if action == "term":
    os.kill(os.getpid(), signal.SIGTERM)
    return None
  if action == "enospc":
    raise OSError(errno.ENOSPC, f"No space left on device (injected at {site})")
  return action


def _hook_orbax() -> None:
  """Routes Orbax's save through the `save_write` and `save_commit` sites.

  Patches two private Orbax methods; a changed Orbax fails loudly here rather than
  silently testing nothing.
  """
  global _orbax_hooked
  if _orbax_hooked:
    return
  from orbax.checkpoint._src.checkpointers import checkpointer  # pylint: disable=g-import-not-at-top
  from orbax.checkpoint._src.path import atomicity  # pylint: disable=g-import-not-at-top

  save_metadata = checkpointer.Checkpointer._save_step_metadata  # pylint: disable=protected-access
  finalize = atomicity.AtomicRenameTemporaryPath.finalize

  def hooked_save_metadata(self, *args, **kwargs):
    point("save_write")
    return save_metadata(self, *args, **kwargs)

  async def hooked_finalize(self, *args, **kwargs):
    point("save_commit")
    return await finalize(self, *args, **kwargs)

  checkpointer.Checkpointer._save_step_metadata = hooked_save_metadata  # pylint: disable=protected-access
  atomicity.AtomicRenameTemporaryPath.finalize = hooked_finalize
  _orbax_hooked = True
