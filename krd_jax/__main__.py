"""Command line: python -m krd_jax {demo,teacher,student} [--config=FILE[:ARG]] [--config.key=value ...]

  demo      train the teacher, then students with every demo method; print one table
  teacher   train (or reuse) the configured teacher
  student   distil the configured student (training the teacher first if needed)

The config defaults to experiments/configs/digits_lt.py (the embedded default);
override any field with --config.a.b=value. Unknown keys and wrong types are errors.
"""

from __future__ import annotations

import os
import sys

COMMANDS = ("demo", "teacher", "student")


def _default_config_path() -> str:
  here = os.path.dirname(os.path.abspath(__file__))
  return os.path.join(os.path.dirname(here), "experiments", "configs", "digits_lt.py")


def _run(argv: list[str]) -> None:
  from absl import flags
  from absl import logging
  from krd_jax import runs

  # Orbax and tfds log every save at INFO; progress bars and the table say enough.
  logging.set_verbosity(logging.WARNING)

  cfg = flags.FLAGS.config
  if len(argv) != 2 or argv[1] not in COMMANDS:
    raise SystemExit(f"usage: python -m krd_jax {{{','.join(COMMANDS)}}} [--config=...]\n"
                     f"{__doc__}")
  command = argv[1]
  if command == "demo":
    result = runs.demo(cfg)
    print(result["table"])
    print(f"\nper-class accuracy plot: {os.path.abspath(result['plot'])}")
    print(f"report: {os.path.abspath(os.path.join(cfg.workdir, 'report.md'))} "
          f"({result['seconds']:.0f} s)")
  else:
    summary = getattr(runs, command)(cfg)
    print({k: round(v, 2) for k, v in summary.items() if k != "per_class"})


def main() -> None:
  os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
  from absl import app
  from ml_collections import config_flags

  config_flags.DEFINE_config_file("config", _default_config_path(),
                                  "run configuration (a Python config file)",
                                  lock_config=True)
  app.run(_run, argv=sys.argv)


if __name__ == "__main__":
  main()
