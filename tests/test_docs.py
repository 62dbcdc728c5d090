"""docs/method.md's table of KRDistill's defaults is the code's: a default changed in one
place and not the other fails here."""

import pathlib
import re

from krd_jax import methods

ROOT = pathlib.Path(__file__).resolve().parents[1]


def _value(text: str):
  text = text.strip().strip("`")
  if text in ("True", "False"):
    return text == "True"
  try:
    return float(text)
  except ValueError:
    return text


def test_method_md_defaults_table_matches_krdistill_defaults():
  doc = (ROOT / "docs" / "method.md").read_text()
  section = doc[doc.index("## The default, and how it was chosen"):]
  section = section[:section.index("\n\n", section.index("| knob |"))]
  defaults = methods.get("krd").defaults()
  seen = set()
  for line in (l for l in section.splitlines() if l.startswith("| `")):
    knobs_cell, default_cell = line.split("|")[1:3]
    knobs = re.findall(r"`([a-z_]+)`", knobs_cell)
    if default_cell.strip() == "the recipe's":
      continue
    values = [_value(v) for v in default_cell.split(",")]
    assert len(values) == len(knobs), line
    for knob, value in zip(knobs, values):
      want = defaults[knob]
      assert (float(want) if isinstance(want, (int, float)) and not isinstance(want, bool)
              else want) == value, f"docs/method.md says {knob}={value}, code {want!r}"
      seen.add(knob)
  missing = set(defaults) - seen - {"warmup_epochs"}
  assert not missing, f"knobs without a row in docs/method.md: {sorted(missing)}"


def _documented_commands():
  """Every `python -m krd_jax COMMAND ...` in README.md and docs/*.md (continuations
  joined, trailing comments dropped)."""
  import shlex
  for path in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
    text = path.read_text().replace("\\\n", " ")
    for line in text.splitlines():
      match = re.search(r"python -m krd_jax (demo|teacher|student|evaluate|show)\b"
                        r"([^#\"`]*)", line)
      if match:
        yield path.name, match.group(1), shlex.split(match.group(2))


# What a documented command may need that a clone lacks: the user's own config file or
# data folders (the commands' text says what they are).
NEEDS_YOUR_FILES = ("config file my_config.py does not load",
                    "config.data.data_dir='/mnt/shared/imagenet' is not allowed",
                    "config.data.data_dir='/shared/imagenet' is not allowed")


def test_every_documented_command_parses_and_passes_the_config_checks():
  """README's and docs' commands run as written up to the data: each parses and passes
  the checks a run makes before reading data (a refused override, like a sweep of an idle
  knob, fails here), except those that name the user's own files."""
  from krd_jax import __main__ as cli_lib
  from krd_jax import validate
  seen = 0
  for where, command, args in _documented_commands():
    seen += 1
    try:
      command, cfg = cli_lib.parse(["krd_jax", command, *args])
      validate.check_config(cfg, "student" if command in ("show", "evaluate") else command)
    except Exception as error:  # pylint: disable=broad-except
      assert any(n in str(error) for n in NEEDS_YOUR_FILES), (where, command, args, error)
  assert seen >= 8


def test_every_documented_sweep_plans():
  """The sweep commands of README, docs and the ablation runner's own docstrings plan
  (every config built and checked, nothing run): a grid over an idle knob fails here."""
  import shlex
  from krd_jax import __main__ as cli_lib
  from krd_jax import config as config_lib
  from krd_jax.ablate.grid import parse_grid
  from krd_jax.ablate.planning import plan
  sources = [ROOT / "README.md", ROOT / "docs" / "cli.md", ROOT / "experiments" / "ablate.py",
             ROOT / "krd_jax" / "ablate" / "__init__.py"]
  seen = 0
  for path in sources:
    text = path.read_text().replace("\\\n", " ")
    for line in text.splitlines():
      match = re.search(r"(?:python -m krd_jax\.ablate|python experiments/ablate\.py)(.*)", line)
      if not match or "--config" not in match.group(1):  # a heading, not a command
        continue
      seen += 1
      args = shlex.split(match.group(1).split("#")[0])
      flags = dict(a.lstrip("-").split("=", 1) if "=" in a else (a.lstrip("-"), None)
                   for a in args)
      values = iter(args)
      for a in values:  # "--flag value" pairs
        if a.startswith("--") and "=" not in a:
          flags[a[2:]] = next(values)
      overrides = [a for a in args if a.startswith("--config.")]
      _, base = cli_lib.parse(["krd_jax", "show", f"--config={flags['config']}", *overrides])
      plan(base, parse_grid(flags.get("grid", ""), base), flags["methods"].split(","),
           list(range(int(flags["seeds"]))), "/nonexistent/sweep",
           config_lib.overridden_keys(["x", *overrides]))
  assert seen >= 4
