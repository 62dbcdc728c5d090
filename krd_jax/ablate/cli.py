"""The ablation runner's command line: python -m krd_jax.ablate (see krd_jax.ablate)."""

from __future__ import annotations

import os
import re
import sys

from krd_jax import config as config_lib
from krd_jax import configs
from krd_jax.ablate.grid import parse_grid
from krd_jax.ablate.planning import every_method
from krd_jax.ablate.planning import plan
from krd_jax.ablate.sweep import run_sweep


def _seeds(text: str, base_seed: int) -> list[int]:
  """'3' -> three seeds from the base seed on; '0,4,7' -> exactly those."""
  if "," in text:
    return [int(s) for s in text.split(",") if s]
  return list(range(base_seed, base_seed + int(text)))


def _refuse(message: str) -> None:
  """Bad input: one line on stderr and exit status 2, as `python -m krd_jax` does."""
  print(f"error: {message}", file=sys.stderr, flush=True)
  raise SystemExit(2)


def _main(argv: list[str]) -> None:
  from absl import flags
  from absl import logging
  from krd_jax import ablate

  # Orbax and tfds log every save at INFO; the progress bars and the table say enough.
  logging.set_verbosity(logging.WARNING)
  if len(argv) > 1:
    raise SystemExit(f"unexpected arguments {argv[1:]}\n{ablate.__doc__}")
  f = flags.FLAGS
  base = f.config
  workdir = f.workdir or f"{base.workdir}_ablate"
  methods = [m for m in f.methods.split(",") if m] if f.methods else [base.student.method]
  if f.methods == "all":
    methods, left_out = every_method(base)
    for name, why in left_out.items():
      print(f"--methods all leaves out {name}: {why}", flush=True)
  try:  # a bad grid, method or seed: one line, not a traceback
    grid = parse_grid(f.grid, base)
    seeds = _seeds(f.seeds, base.seed)
    overridden = config_lib.overridden_keys(sys.argv)
    plan(base, grid, methods, seeds, workdir, overridden)
  except ValueError as e:
    _refuse(str(e))
  if f.parallel_seeds < 1:
    _refuse(f"--parallel-seeds={f.parallel_seeds}; allowed: 1 or more")
  result = run_sweep(base, grid, methods, seeds, workdir, f.out, f.parallel_seeds,
                     f.share_teacher, overridden=overridden)
  print(result["table"])
  print(f"{result['trained']} student run(s) and {result['teachers_trained']} "
        f"teacher(s) trained now; {len(result['rows'])} runs in the sweep.")
  for name, path in result["files"].items():
    print(f"{name}: {os.path.abspath(path)}")


def main() -> None:
  from krd_jax import compile_cache
  from krd_jax.tf_env import quiet_tensorflow
  quiet_tensorflow()
  compile_cache.use_persistent_compilation_cache()
  from absl import app
  from absl import flags
  from ml_collections import config_flags

  config_flags.DEFINE_config_file(
      "config", configs.path(configs.DEFAULT),
      "base configuration: a shipped recipe (NAME[:ARG]) or a config file (FILE[:ARG])",
      lock_config=True)
  flags.DEFINE_string("grid", "", 'axes "key=v1,v2 key2=v3,v4" (cartesian product)')
  flags.DEFINE_string("methods", "", "comma-separated student methods, or 'all' (every "
                      "registered method the config's models and data can run; default: "
                      "the config's student.method)")
  flags.DEFINE_string("seeds", "1", "number of seeds (from the config's seed on), or "
                      "a comma-separated list of seeds")
  flags.DEFINE_string("workdir", "", "teachers and runs (default: <config workdir>_ablate)")
  flags.DEFINE_string("out", "", "reports folder (default: the workdir)")
  flags.DEFINE_bool("share_teacher", True, "train the methods of one seed as one program "
                    "that runs the teacher once per step (same results to float32 "
                    "rounding); --noshare_teacher trains each alone")
  flags.DEFINE_integer("parallel_seeds", 1, "train up to this many seeds of a cell and "
                       "method as one vmapped program (1: in turn); also --parallel-seeds")
  # absl names flags with underscores; accept the dashed spelling the docs use.
  sys.argv = [re.sub(r"^--parallel-seeds\b", "--parallel_seeds", a) for a in sys.argv]
  try:
    sys.argv = configs.resolve_argv(sys.argv)  # a shipped recipe's name -> its file
  except ValueError as e:
    _refuse(str(e))
  app.run(_main)


if __name__ == "__main__":
  main()
