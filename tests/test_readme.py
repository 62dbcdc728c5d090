"""README's results table is what benchmarks/readme_table.py computes from the raw rows by
its one rule: the two cannot drift."""

import importlib.util
import pathlib

ROOT = pathlib.Path(__file__).resolve().parents[1]


def test_readme_holds_the_table_regenerated_from_the_raw_rows():
  spec = importlib.util.spec_from_file_location("readme_table",
                                                ROOT / "benchmarks" / "readme_table.py")
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  assert module.table() in (ROOT / "README.md").read_text()
