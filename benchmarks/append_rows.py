"""Append a sweep's results.csv (python -m krd_jax.ablate ... --out DIR) to a raw file of
results/, each row with its teacher, its method's knobs, the machine, the date and the
command, so that a long table can be committed seed by seed as it finishes.

  python benchmarks/append_rows.py /tmp/abl/table_s0/results.csv \
      benchmarks/results/cifar100_lt_cpu_every_distiller.csv \
      --machine "2-core AMD EPYC" --command "python -m krd_jax.ablate ..."

A run shared by several cells of a grid (every method the grid does not touch) is one
row; a run already in the file (same run folder) is skipped, so appending twice is safe.
"knobs" holds the values that act on the row's method ("nckd_weight=4"), from the grid or
the command line (results.csv has a column for each), so a method swept over its own knob
has one row per setting and every other method one.
"""

from __future__ import annotations

import argparse
import csv
import datetime
import os
import sys

LEAD = ["teacher_loss", "method", "knobs", "seed"]
METRICS = ["status", "overall", "balanced", "many", "medium", "few", "val_balanced",
           "post_hoc_tau", "post_hoc_val_balanced", "post_hoc_balanced", "run_dir",
           "teacher_dir"]
TAIL = ["machine", "date", "command"]


def knobs(row: dict) -> str:
  """The row's set values that act on its method: "lrd_form=decoupled nckd_weight=4"."""
  own = f"methods.{row['method']}."
  return " ".join(f"{k[len(own):]}={v}" for k, v in sorted(row.items())
                  if k.startswith(own) and v != "")


def converted(rows: list[dict], teacher_loss: str, machine: str, command: str,
              date: str) -> list[dict]:
  out, seen = [], set()
  for row in rows:
    if row["run_dir"] in seen:  # one run reported in several cells
      continue
    seen.add(row["run_dir"])
    out.append({"teacher_loss": teacher_loss, "method": row["method"], "knobs": knobs(row),
                "seed": row["seed"], **{k: row.get(k, "") for k in METRICS},
                "machine": machine, "date": date, "command": command})
  return out


def append(rows: list[dict], path: str) -> int:
  """Appends the rows whose run folder the file lacks; returns how many."""
  existing = set()
  if os.path.exists(path):
    with open(path) as f:
      reader = csv.DictReader(f)
      if reader.fieldnames != LEAD + METRICS + TAIL:
        sys.exit(f"{path} has other columns than {LEAD + METRICS + TAIL}")
      existing = {r["run_dir"] for r in reader}
  new = [r for r in rows if r["run_dir"] not in existing]
  with open(path, "a", newline="") as f:
    writer = csv.DictWriter(f, LEAD + METRICS + TAIL)
    if not existing and os.path.getsize(path) == 0:
      writer.writeheader()
    writer.writerows(new)
  return len(new)


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("results", help="a sweep's results.csv")
  parser.add_argument("raw", help="the raw file in benchmarks/results/ to append to")
  parser.add_argument("--teacher-loss", default="ce")
  parser.add_argument("--machine", required=True)
  parser.add_argument("--command", required=True)
  parser.add_argument("--date", default=datetime.date.today().isoformat())
  args = parser.parse_args()
  with open(args.results) as f:
    rows = list(csv.DictReader(f))
  # Diverged runs stay: a negative result is a row too.
  unknown = [r for r in rows if r["status"] not in ("trained", "reused", "diverged")]
  if unknown:
    sys.exit(f"{len(unknown)} rows of {args.results} have no outcome: "
             f"{sorted({r['status'] for r in unknown})}")
  added = append(converted(rows, args.teacher_loss, args.machine, args.command, args.date),
                 args.raw)
  print(f"{args.raw}: {added} rows appended")


if __name__ == "__main__":
  main()
