"""XLA's persistent compilation cache for krd_jax's command lines.

A rerun of the same command (a resumed run, the next seed, a sweep run again with one
more method) compiles the same programs again. On CPU that is tens of seconds per
process: XLA takes 1-6 s to compile the random bits of one small conv kernel's
initialiser (jax 0.10, threefry_partitionable), and a cohort's train step takes minutes.
With the cache the second run of a 5-method CIFAR-100-LT sweep took 30-40 s less of about
245 s (benchmarks/RESULTS.md, "Time to a sweep's table against PyTorch"). The command
lines turn it on by default; the library itself (`import krd_jax`) leaves jax's setting
alone.
"""

from __future__ import annotations

import os

from krd_jax.data import cache

ENV = "JAX_COMPILATION_CACHE_DIR"


def default_folder() -> str:
  """<krd_jax's cache folder>/xla: ~/.cache/krd_jax/xla unless $KRD_JAX_CACHE moves it."""
  return os.fspath(cache.default_cache_dir() / "xla")


def use_persistent_compilation_cache() -> str | None:
  """Turns jax's persistent compilation cache on in `default_folder()`, unless the user
  chose: $JAX_COMPILATION_CACHE_DIR names another folder, and set to the empty string it
  keeps the cache off (jax reads the variable itself). Call before the first compile.

  The folder only grows; delete it at any time (the next run compiles again).

  Returns:
    The folder the cache lives in, or None where it is off.
  """
  if ENV in os.environ:
    return os.environ[ENV] or None
  import jax  # pylint: disable=g-import-not-at-top
  folder = default_folder()
  jax.config.update("jax_compilation_cache_dir", folder)
  return folder
