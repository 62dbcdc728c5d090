"""The command lines' persistent compilation cache: where it goes and how users steer it."""

import os
import subprocess
import sys

import jax

from krd_jax import compile_cache


def test_a_folder_the_user_named_or_emptied_is_left_to_jax(monkeypatch):
  before = jax.config.jax_compilation_cache_dir
  monkeypatch.setenv("JAX_COMPILATION_CACHE_DIR", "/somewhere/else")
  assert compile_cache.use_persistent_compilation_cache() == "/somewhere/else"
  monkeypatch.setenv("JAX_COMPILATION_CACHE_DIR", "")
  assert compile_cache.use_persistent_compilation_cache() is None
  assert jax.config.jax_compilation_cache_dir == before


def test_the_default_folder_follows_krd_jax_cache(monkeypatch, tmp_path):
  monkeypatch.setenv("KRD_JAX_CACHE", str(tmp_path))
  assert compile_cache.default_folder() == str(tmp_path / "xla")


def test_a_fresh_process_writes_its_programs_to_the_default_folder(tmp_path):
  env = {k: v for k, v in os.environ.items() if k != "JAX_COMPILATION_CACHE_DIR"}
  env.update(KRD_JAX_CACHE=str(tmp_path), JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0")
  program = ("import jax, jax.numpy as jnp\n"
             "from krd_jax import compile_cache\n"
             "print(compile_cache.use_persistent_compilation_cache())\n"
             "jax.jit(lambda x: jnp.sin(x) * 3)(jnp.ones(7)).block_until_ready()\n")
  out = subprocess.run([sys.executable, "-c", program], env=env, check=True,
                       capture_output=True, text=True).stdout
  assert out.strip() == str(tmp_path / "xla")
  assert os.listdir(tmp_path / "xla"), "nothing was written to the cache folder"
  # Emptied, the same program writes nothing.
  other = tmp_path / "off"
  env.update(KRD_JAX_CACHE=str(other), JAX_COMPILATION_CACHE_DIR="")
  out = subprocess.run([sys.executable, "-c", program], env=env, check=True,
                       capture_output=True, text=True).stdout
  assert out.strip() == "None"
  assert not other.exists()
