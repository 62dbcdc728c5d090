"""Ablation sweeps: a grid of config overrides x student methods x seeds.

  python -m krd_jax.ablate --config=digits_lt \
      --grid "methods.krd.beta=0.5,1,2 methods.krd.swap=true,false data.imbalance=10,50" \
      --methods krd,kd --seeds 3 --workdir runs/ablate_beta

The grid is the cartesian product of its axes ("key=v1,v2,..." separated by spaces);
each value is typed by the base config's field (bool: true/false, int, float, str),
and a misspelt key, a badly typed value or a method knob that would not act in some run
(methods.krd.lam while use_rrd is off: each knob declares when it acts) is an error
before anything is trained or written. Any field of the base config can also be overridden as usual
(--config.student.epochs=50).

Every cell x method x seed is one student run. Teachers are trained once per distinct
(data, teacher) configuration, with the base config's seed, and shared by every
student of that configuration; seeds vary the students. Runs whose effective
configuration is identical (e.g. the kd student of two cells that differ only in
methods.krd.beta) are trained once and reported in each cell. Running the same command
again skips finished runs and resumes an interrupted one from its last checkpoint, and
reads back the programs an earlier process compiled (docs/cli.md).

The students of one seed see the same batches and augmented views, so those that share
data and teacher (every method, and every cell of a grid over method knobs) train as one
cohort (krd_jax.train.cohort) that runs the frozen teacher once per step instead of once
per student: the same results to float32 rounding, in a fraction of the time where the
teacher dominates the step (benchmarks/RESULTS.md). A cohort too large for the device's
memory is split in two until it fits. --noshare_teacher trains each run alone.

--parallel-seeds N trains up to N seeds of a cell x method as one vmapped program
(krd_jax.train.seeds: each seed keeps its own initialisation, data order and
augmentation; results equal the seeds trained in turn to float32 rounding), so small
models use an accelerator far better. Convolutional students on CPU still run their
seeds in turn, which is faster there. See benchmarks/RESULTS.md.

Layout of the workdir:
  teachers/<key>/                      one teacher per (data, teacher) configuration
  students/<method>_s<seed>_<key>/     one student run (config.json, final.json, ...)
  parallel/<method>_s<seeds>_<key>/    a group of seeds trained together (checkpoints)
  cohorts/s<seed>_<key>/               one seed's students trained together (checkpoints)
and of the output folder (--out, default the workdir):
  results.csv              one row per cell x method x seed
  summary.md, summary.csv  mean ± std over seeds per cell x method
  balanced_vs_<key>.png    balanced accuracy against the first swept key, per method
  per_class.png            without --grid: per-class accuracy of each method (seed
                           means) and of the teacher, against training count

Expected runtime: the README's sweep (`--grid "methods.krd.beta=0.5,1,2
methods.krd.temperature=2,4" --methods krd,kd --seeds 3` on digits_lt: 21 distinct student
runs and 1 teacher) took 1 min 56 s on 2 CPU cores (2026-12-06, sharing them with a
CIFAR sweep); the example above adds a data axis and so a teacher per imbalance.
"""

from krd_jax.ablate.cli import main
from krd_jax.ablate.grid import Grid
from krd_jax.ablate.grid import cells
from krd_jax.ablate.grid import parse_grid
from krd_jax.ablate.planning import Run
from krd_jax.ablate.planning import plan
from krd_jax.ablate.sweep import parallel_groups
from krd_jax.ablate.sweep import run_sweep
from krd_jax.reports import METRICS
from krd_jax.reports import SELECTION
from krd_jax.reports import aggregate
from krd_jax.reports import summary_markdown

__all__ = ["Grid", "METRICS", "Run", "SELECTION", "aggregate", "cells", "main",
           "parallel_groups", "parse_grid", "plan", "run_sweep", "summary_markdown"]
