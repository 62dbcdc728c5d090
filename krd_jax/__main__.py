"""Command line: python -m krd_jax COMMAND [--config=RECIPE[:ARG] | --config=FILE[:ARG]] [--config.key=value ...]

  demo      train the teacher, then students with every demo method; print one table
  teacher   train (or reuse) the configured teacher
  student   distil the configured student (training the teacher first if needed)
  evaluate  evaluate the saved teacher and the newest checkpoint of the configured
            student run on the test set (nothing trained or written)
  show      print the resolved config (recipe, argument and overrides) and exit

--config names a recipe that ships with krd_jax (digits_lt, cifar10_lt, cifar100_lt,
imagenet_lt, inat2018; e.g. --config=cifar100_lt:offline,local) or a config file of
your own (--config=my_config.py:ARG). It defaults to digits_lt, the embedded default.
Override any field with --config.a.b=value. Unknown keys, wrong types and values out
of range are refused before anything runs.

Several processes (TPU pod workers, SLURM tasks) run the same command and train as
one job: see --config.distributed.* (krd_jax/distributed.py) and the README.

Compiled programs are cached in ~/.cache/krd_jax/xla (krd_jax/compile_cache.py): a rerun
compiles nothing it compiled before. JAX_COMPILATION_CACHE_DIR= (empty) turns that off.

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

import os
import re
import sys

from krd_jax.tf_env import quiet_tensorflow

COMMANDS = ("demo", "teacher", "student", "evaluate", "show")
EXIT_BAD_INPUT = 2
EXIT_NONFINITE = 3
EXIT_WRITE_FAILED = 4
EXIT_PREEMPTED = 128 + 15  # What a shell reports for SIGTERM: schedulers requeue on it.


class _UsageError(Exception):
  """Bad command line; str() is one line."""


def _default_config_path() -> str:
  from krd_jax import configs  # pylint: disable=g-import-not-at-top
  return configs.path(configs.DEFAULT)


# ----------------------------------------------------------------------------- parsing


def _config_flag(argv: list[str] | None):
  """A fresh absl FlagValues holding --config (and, given argv, its --config.* overrides)."""
  from absl import flags  # pylint: disable=g-import-not-at-top
  from ml_collections import config_flags  # pylint: disable=g-import-not-at-top
  values = flags.FlagValues()
  config_flags.DEFINE_config_file("config", _default_config_path(),
                                  "run configuration (a Python config file)",
                                  flag_values=values, lock_config=True,
                                  sys_argv=argv or [sys.argv[0]])
  return values


def _last_line(error: BaseException) -> str:
  lines = [line.strip() for line in str(error).strip().splitlines() if line.strip()]
  return lines[-1] if lines else type(error).__name__


def parse(argv: list[str]):
  """(command, locked ConfigDict) from a command line, parsed by absl's config_flags.

  absl parses twice: first --config alone (the other flags left over), so each
  override can be checked against the loaded config with one message naming the
  allowed keys; then everything, typed by the config's fields.

  Raises:
    _UsageError: unknown command, flag or key, a value of the wrong type, or a
      config file that does not load (one-line message).
  """
  from absl import flags  # pylint: disable=g-import-not-at-top
  from krd_jax import config as config_lib  # pylint: disable=g-import-not-at-top
  from krd_jax import configs  # pylint: disable=g-import-not-at-top
  try:
    argv = configs.resolve_argv(argv)  # a shipped recipe's name -> its file
  except ValueError as error:
    raise _UsageError(str(error)) from None
  base_values = _config_flag(None)
  try:
    rest = base_values(list(argv), known_only=True)
    base = base_values.config
    base.keys()  # A config file that failed to load raises only when first read.
  except flags.Error as error:  # e.g. "--config" without a value
    raise _UsageError(f"{_last_line(error)}; allowed: --config=RECIPE[:ARG] or "
                      "--config=FILE[:ARG]") from None
  except Exception as error:  # pylint: disable=broad-except
    where = base_values["config"].config_filename or _default_config_path()
    raise _UsageError(f"config file {where} does not load: {_last_line(error)}") from None
  positional, overridden, i = [], [], 1
  while i < len(rest):
    arg, match = rest[i], config_lib.OVERRIDE_FLAG.match(rest[i])
    if match:
      try:
        config_lib.lookup(base, match.group(1))
      except ValueError as error:
        raise _UsageError(str(error)) from None
      overridden.append(match.group(1))
      if match.group(2) is None and i + 1 < len(rest) and not rest[i + 1].startswith("-"):
        i += 1  # "--config.key value": the value is the next argument.
    elif arg.startswith("-"):
      raise _UsageError(f"unknown flag --{arg.lstrip('-').split('=', 1)[0]}; allowed: "
                        "--config=RECIPE[:ARG] or FILE[:ARG], and --config.<key>=VALUE")
    else:
      positional.append(arg)
    i += 1
  if len(positional) != 1 or positional[0] not in COMMANDS:
    got = " ".join(positional) or "nothing"
    raise _UsageError(f"command {got!r} is not allowed; allowed: one of "
                      f"{', '.join(COMMANDS)} (python -m krd_jax COMMAND [--config=...])")
  values = _config_flag(list(argv))
  try:
    values(list(argv))
  except flags.Error as error:
    raise _UsageError(_type_error_message(base, error)) from None
  _check_overrides_act(positional[0], values.config, overridden)
  return positional[0], values.config


def _check_overrides_act(command: str, cfg, overridden: list[str]) -> None:
  """An override of a method knob that this command's runs leave without effect (e.g.
  methods.krd.lam while use_rrd is off) is refused: it would read as a result."""
  if command == "show" or not any(k.startswith("methods.") for k in overridden):
    return
  from krd_jax import validate  # pylint: disable=g-import-not-at-top
  try:
    used = validate.methods_used(cfg, "student" if command == "evaluate" else command)
    validate.check_knobs_act(cfg, used, overridden)
  except validate.InputError as error:
    raise _UsageError(str(error)) from None


def _type_error_message(base, error: BaseException) -> str:
  """One line naming the override whose value did not parse and the type it needs."""
  match = re.search(r"flag --config\.([\w.]+)=(.*?): (.*)", str(error).splitlines()[0])
  if not match:
    return f"bad command line: {_last_line(error)}"
  key, value, reason = match.groups()
  from krd_jax import config as config_lib  # pylint: disable=g-import-not-at-top
  node = config_lib.lookup(base, key)
  wanted = "a ConfigDict" if hasattr(node, "keys") else f"a value of type {type(node).__name__}"
  return f"config.{key}={value!r} has the wrong type; allowed: {wanted} ({reason.strip()})"


# ----------------------------------------------------------------------------- running


def _say(kind: str, message: str) -> None:
  print(f"krd_jax: {kind}: " + " ".join(str(message).split()), file=sys.stderr, flush=True)


def _execute(command: str, cfg) -> None:
  from krd_jax import distributed, runs  # pylint: disable=g-import-not-at-top
  if command == "show":
    print(cfg)
  elif command == "demo":
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
    if preemption.requested():  # kept for a next fit that never came (several processes)
      _say("note", "SIGTERM arrived after the last training step; the job finished first")
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


def _parse_or_exit(argv: list[str]):
  """absl's flags_parser for `app.run`: (command, cfg), or the help text / the one-line
  usage error and its exit status."""
  from absl import flags  # pylint: disable=g-import-not-at-top
  if any(arg in ("-h", "--help", "--helpfull") for arg in argv[1:]):
    print(__doc__)
    sys.exit(0)
  flags.FLAGS([argv[0]])  # absl's own flags keep their defaults (app.run reads them).
  try:
    return parse(argv)
  except _UsageError as error:
    _say("error", error)
    sys.exit(EXIT_BAD_INPUT)


def cli(argv: list[str]) -> int:
  """The whole command line in this process; returns the exit status instead of exiting
  (what `main` does, for tests and notebooks)."""
  quiet_tensorflow()
  try:
    command, cfg = _parse_or_exit(argv)
  except SystemExit as done:
    return int(done.code or 0)
  return run(command, cfg)


def main() -> None:
  """The console script: absl's `app.run` with our parser and exit statuses."""
  import logging  # pylint: disable=g-import-not-at-top
  from absl import app  # pylint: disable=g-import-not-at-top
  from krd_jax import compile_cache  # pylint: disable=g-import-not-at-top
  quiet_tensorflow()
  compile_cache.use_persistent_compilation_cache()

  def run_parsed(parsed) -> None:
    # One format for our warnings and the libraries' (force: app.run installed absl's
    # handler on the root logger).
    logging.basicConfig(level=logging.WARNING, format="krd_jax: %(levelname)s: %(message)s",
                        force=True)
    sys.exit(run(*parsed))

  app.run(run_parsed, flags_parser=_parse_or_exit)


if __name__ == "__main__":
  main()
