"""Test setup: 4 fake CPU devices so data parallelism is tested without accelerators, and
one XLA compilation cache for the whole run."""

import os
import shutil
import tempfile

# Must happen before JAX initialises its backend.
os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ["XLA_FLAGS"] = (
    os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=4").strip()
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

# One persistent compilation cache shared by both xdist workers and every subprocess a
# test starts (they inherit the environment), so a program compiled once in the run is
# read back elsewhere. It matters on CPU: XLA takes seconds to compile the threefry bits
# of one small conv kernel's initialiser (jax 0.10, threefry_partitionable), and every
# model init, CLI subprocess and restarted run compiled them again. The first process
# (pytest's controller, before it starts the workers) makes the folder and removes it.
_CACHE_OWNER = "JAX_COMPILATION_CACHE_DIR" not in os.environ
if _CACHE_OWNER:
  os.environ["JAX_COMPILATION_CACHE_DIR"] = tempfile.mkdtemp(prefix="krd_jax_tests_xla_")
  os.environ["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"] = "0.05"

import jax  # noqa: E402

jax.config.update("jax_enable_x64", False)


def pytest_unconfigure(config):
  if _CACHE_OWNER and not hasattr(config, "workerinput"):
    shutil.rmtree(os.environ["JAX_COMPILATION_CACHE_DIR"], ignore_errors=True)
