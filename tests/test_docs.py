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
