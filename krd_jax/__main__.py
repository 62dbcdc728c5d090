"""Command line: python -m krd_jax {demo,teacher,student,evaluate} [--config=FILE[:ARG]] [--config.key=value ...]

  demo      train the teacher, then students with every demo method; print one table
  teacher   train (or reuse) the configured teacher
  student   distil the configured student (training the teacher first if needed)
  evaluate  evaluate the saved teacher and the newest checkpoint of the configured
            student run on the test set (nothing trained or written)

The config defaults to experiments/configs/digits_lt.py (the embedded default);
override any field with --config.a.b=value. Unknown keys, wrong types and values out
of range are refused before anything runs.

Several processes (TPU pod workers, SLURM tasks) run the same command and train as
one job: see --config.distributed.* (krd_jax/distributed.py) and the README.

Exit status:
  0    done
  2    bad input (config or data): one line naming the key and the allowed values;
       nothing was written in the workdir
  3    the loss became NaN/Inf: the run stopped, its last good checkpoint untouched
  4    a checkpoint or log could not be written (e.g. disk full); the previous
       checkpoint is intact
  143  stopped by SIGTERM (preemption) after saving a checkpoint; run the same
       command again to resume
  1    anything else (with a traceback)
A run interrupted any way at all resumes from its last checkpoint when the same
command is run again.
"""

from __future__ import annotations

import difflib
import os
import re
import sys

COMMANDS = ("demo", "teacher", "student", "evaluate")
EXIT_BAD_INPUT = 2
EXIT_NONFINITE = 3
EXIT_WRITE_FAILED = 4
EXIT_PREEMPTED = 128 + 15  # What a shell reports for SIGTERM: schedulers requeue on it.
_OVERRIDE = re.compile(r"^--?(no)?config\.([^=]+)(=.*)?$")


class _UsageError(Exception):
  """Bad command line; str() is one line."""


def _default_config_path() -> str:
  here = os.path.dirname(os.path.abspath(__file__))
  return os.path.join(os.path.dirname(here), "experiments", "configs", "digits_lt.py")


# ----------------------------------------------------------------------------- parsing


def _split_argv(argv: list[str]) -> tuple[list[str], str | None, list[str]]:
  """(positional args, --config value or None, override paths) of argv[1:]."""
  positional, config, overrides = [], None, []
  args = argv[1:]
  i = 0
  while i < len(args):
    arg = args[i]
    if not arg.startswith("-"):
      positional.append(arg)
    elif re.match(r"^--?config(=|$)", arg):
      if "=" in arg:
        config = arg.split("=", 1)[1]
      elif i + 1 < len(args):
        config, i = args[i + 1], i + 1
      else:
        raise _UsageError("flag --config needs a value; allowed: --config=FILE[:ARG]")
    elif _OVERRIDE.match(arg):
      overrides.append(_OVERRIDE.match(arg).group(2))
      if "=" not in arg and not _OVERRIDE.match(arg).group(1) and i + 1 < len(args) \
          and not args[i + 1].startswith("-"):
        i += 1  # "--config.key value": the value is the next argument.
    else:
      name = arg.lstrip("-").split("=", 1)[0]
      raise _UsageError(f"unknown flag --{name}; allowed: --config=FILE[:ARG] and "
                        "--config.<key>=VALUE")
    i += 1
  return positional, config, overrides


def _load_config(sys_argv: list[str]):
  """The config file's ConfigDict with the overrides in `sys_argv` applied."""
  from absl import flags  # pylint: disable=g-import-not-at-top
  from ml_collections import config_flags  # pylint: disable=g-import-not-at-top
  values = flags.FlagValues()
  config_flags.DEFINE_config_file("config", _default_config_path(),
                                  "run configuration (a Python config file)",
                                  flag_values=values, lock_config=True, sys_argv=sys_argv)
  values(sys_argv)
  config = values.config
  config.keys()  # A config file that failed to load raises only when first read.
  return config


def _last_line(error: BaseException) -> str:
  lines = [line.strip() for line in str(error).strip().splitlines() if line.strip()]
  return lines[-1] if lines else type(error).__name__


def _check_override_keys(base, overrides: list[str]) -> None:
  """Every override must name an existing key; else list the allowed ones."""
  for path in overrides:
    node, walked = base, []
    for part in path.split("."):
      keys = list(node.keys()) if hasattr(node, "keys") else []
      if part not in keys:
        parent = ".".join(["config", *walked])
        close = difflib.get_close_matches(part, keys, n=1)
        hint = f" (did you mean {'.'.join([*walked, close[0]])}?)" if close else ""
        allowed = ", ".join(sorted(keys)) if keys else "none (it is not a ConfigDict)"
        raise _UsageError(f"unknown config key config.{path}{hint}; allowed keys under "
                          f"{parent}: {allowed}")
      node, walked = node[part], [*walked, part]


def _type_error_message(base, error: BaseException) -> str:
  """One line naming the override whose value did not parse and the type it needs."""
  match = re.search(r"flag --config\.([\w.]+)=(.*?): (.*)", str(error).splitlines()[0])
  if not match:
    return f"bad command line: {_last_line(error)}"
  key, value, reason = match.groups()
  try:
    node = base
    for part in key.split("."):
      node = node[part]
    wanted = "a ConfigDict" if hasattr(node, "keys") else f"a value of type {type(node).__name__}"
  except (KeyError, AttributeError):
    wanted = "a value of the key's type"
  return f"config.{key}={value!r} has the wrong type; allowed: {wanted} ({reason.strip()})"


def parse(argv: list[str]):
  """(command, locked ConfigDict) from a command line.

  Raises:
    _UsageError: unknown command, flag or key, a value of the wrong type, or a
      config file that does not load (one-line message).
  """
  positional, config_path, overrides = _split_argv(argv)
  if len(positional) != 1 or positional[0] not in COMMANDS:
    got = " ".join(positional) or "nothing"
    raise _UsageError(f"command {got!r} is not allowed; allowed: one of "
                      f"{', '.join(COMMANDS)} (python -m krd_jax COMMAND [--config=...])")
  base_argv = [argv[0]] + ([f"--config={config_path}"] if config_path is not None else [])
  try:
    base = _load_config(base_argv)
  except Exception as error:  # pylint: disable=broad-except
    where = config_path or _default_config_path()
    raise _UsageError(f"config file {where} does not load: {_last_line(error)}") from None
  _check_override_keys(base, overrides)
  try:
    cfg = _load_config(list(argv))
  except Exception as error:  # pylint: disable=broad-except
    raise _UsageError(_type_error_message(base, error)) from None
  return positional[0], cfg


# ----------------------------------------------------------------------------- running


def _say(kind: str, message: str) -> None:
  print(f"krd_jax: {kind}: " + " ".join(str(message).split()), file=sys.stderr, flush=True)


def _execute(command: str, cfg) -> None:
  from krd_jax import distributed, runs  # pylint: disable=g-import-not-at-top
  if command == "demo":
    result = runs.demo(cfg)
    if not distributed.is_primary():  # one report per job
      return
    print(result["table"])
    print(f"\nper-class accuracy plot: {os.path.abspath(result['plot'])}")
    print(f"report: {os.path.abspath(os.path.join(cfg.workdir, 'report.md'))} "
          f"({result['seconds']:.0f} s)")
  elif command == "evaluate":
    rows = runs.evaluate(cfg)["rows"]
    if distributed.is_primary():
      print(runs.metrics_lib.format_table(rows))
  else:
    summary = getattr(runs, command)(cfg)
    if distributed.is_primary():
      print({k: round(v, 2) for k, v in summary.items() if k != "per_class"})


def _silence_teardown() -> None:
  """After a failed write, keep the abandoned writer tasks' tracebacks (reported when
  Python collects them at exit) from burying the one-line message."""
  import logging  # pylint: disable=g-import-not-at-top
  logging.getLogger("asyncio").setLevel(logging.CRITICAL)
  sys.unraisablehook = lambda unraisable: None


def run(command: str, cfg) -> int:
  """Runs `command`; returns the exit status (see the module docstring)."""
  import signal  # pylint: disable=g-import-not-at-top
  from absl import logging as absl_logging  # pylint: disable=g-import-not-at-top
  from krd_jax import validate  # pylint: disable=g-import-not-at-top
  from krd_jax.train import checkpoints, loop, preemption  # pylint: disable=g-import-not-at-top

  # Orbax and tfds log every save at INFO; progress bars and the table say enough.
  absl_logging.set_verbosity(absl_logging.WARNING)
  previous = signal.getsignal(signal.SIGTERM)
  preemption.install_preemption_handler()
  try:
    _execute(command, cfg)
  except validate.InputError as error:
    _say("error", error)
    return EXIT_BAD_INPUT
  except loop.NonFiniteLossError as error:
    _say("error", error)
    return EXIT_NONFINITE
  except checkpoints.CheckpointWriteError as error:
    _say("error", error)
    _silence_teardown()
    return EXIT_WRITE_FAILED
  except preemption.Preempted as error:
    _say("preempted", f"{error}; run the same command again to resume")
    return EXIT_PREEMPTED
  except OSError as error:
    if not checkpoints.is_disk_full(error):
      raise
    _say("error", f"disk full: {error}; checkpoints already written are intact; free some "
         "space, then run the same command again to resume")
    _silence_teardown()
    return EXIT_WRITE_FAILED
  finally:
    signal.signal(signal.SIGTERM, previous)
  return 0


def cli(argv: list[str]) -> int:
  """The whole command line; returns the exit status instead of exiting."""
  os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
  if any(arg in ("-h", "--help", "--helpfull") for arg in argv[1:]):
    print(__doc__)
    return 0
  try:
    command, cfg = parse(argv)
  except _UsageError as error:
    _say("error", error)
    return EXIT_BAD_INPUT
  return run(command, cfg)


def main() -> None:
  import logging  # pylint: disable=g-import-not-at-top
  # One format for our warnings and the libraries' (force: an import may have
  # configured the root logger already).
  logging.basicConfig(level=logging.WARNING, format="krd_jax: %(levelname)s: %(message)s",
                      force=True)
  sys.exit(cli(sys.argv))


if __name__ == "__main__":
  main()
