"""Time to a sweep's table: 7 methods x 1 seed, each student alone vs one cohort that runs
the frozen teacher once per step (krd_jax.train.cohort), and PyTorch's online KD step at
its best.

One process, one machine. The sweep is the demo's seven methods (CE, KD, BKD, DKD, LTKD,
KRDistill, logit-adjusted CE) on random CIFAR-shaped long-tailed data (100 classes, the
CIFAR-100-LT IF 100 profile cut to --train-images; 1,000 test images) with a random
teacher (its quality does not change the cost; its own training is not part of a
sweep's students and is excluded). "before": each student trained alone through
Experiment.train_student, as the sweep ran until this change; "after": one
Experiment.train_cohort, as it runs now. Both include compilation, the final evaluation
and the post-hoc adjustment: the wall time from the first student step to the table.
Also measured: the steady-state step (7 solo steps against one cohort step, alternating
timed blocks, medians) and PyTorch's KD step (benchmarks/step_throughput.torch_setup,
the fastest of its variants, compile and warm-up timed apart), compared per step only:
time to a sweep's table against PyTorch is benchmarks/time_to_table.py, both sides run.

  python benchmarks/shared_teacher.py                           # both pairs, ~20 min on 2 CPU cores
  python benchmarks/shared_teacher.py --pairs resnet32:resnet8:128 --epochs 2 --no-torch
  python benchmarks/shared_teacher.py --parts-only --no-torch   # the cohort's parts, ~2 min
  bash benchmarks/gpu_shared_teacher.sh                         # the GPU run (device tool)

PyTorch is a benchmark-only dependency: pip install torch==2.13.0.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import statistics
import sys
import tempfile
import time

import jax
import ml_collections
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from krd_jax import runs, sharding  # noqa: E402
from krd_jax.config import default_config  # noqa: E402
from krd_jax.experiment import Experiment  # noqa: E402
from krd_jax.train import cohort as cohort_lib  # noqa: E402
from krd_jax.train import steps as steps_lib  # noqa: E402
from krd_jax.train import student as student_lib  # noqa: E402
from parallel_seeds import random_teacher, time_block  # noqa: E402

METHODS = ("ce", "kd", "bkd", "dkd", "ltkd", "krd", "logit_adjusted")
NUM_CLASSES = 100


def random_long_tailed(train_images: int, seed: int = 0):
  """Random uint8 32x32x3 images, 100 classes with CIFAR-100-LT's IF 100 profile scaled
  to about `train_images`, and 10 test images per class."""
  from krd_jax.data import from_arrays, long_tail_counts
  rng = np.random.default_rng(seed)
  counts = long_tail_counts(500, NUM_CLASSES, 100.0)
  counts = np.maximum(1, np.round(counts * train_images / counts.sum())).astype(int)
  train_y = np.repeat(np.arange(NUM_CLASSES), counts).astype(np.int32)
  test_y = np.repeat(np.arange(NUM_CLASSES), 10).astype(np.int32)
  image = lambda n: rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8)
  return from_arrays("random_lt", image(len(train_y)), train_y, image(len(test_y)),
                     test_y, num_classes=NUM_CLASSES)


def sweep_configs(teacher: str, student: str, batch: int, epochs: int,
                  workdir: str) -> list[ml_collections.ConfigDict]:
  """The seven students of one seed: the CIFAR pair, SGD, crop + flip, one evaluation."""
  cfg = default_config().unlock()
  cfg.workdir, cfg.progress, cfg.num_devices = workdir, False, 1
  cfg.data.crop_pad, cfg.data.flip = 4, True
  for role, model in ((cfg.teacher, teacher), (cfg.student, student)):
    role.model, role.model_kwargs = model, {}
    role.batch_size, role.epochs = batch, epochs
    role.optim.update(name="sgd", lr=0.05, weight_decay=5e-4, schedule="cosine")
  cfg.eval_every_epochs = cfg.checkpoint_every_epochs = epochs
  cfg = cfg.lock()
  return [runs.with_method(cfg, m) for m in METHODS]


def end_to_end(cfgs, ds, teacher, root: str) -> dict:
  """Wall seconds of the sweep's students: alone (before) and as one cohort (after)."""
  exp = Experiment(cfgs[0], data=ds, teacher=teacher)
  start = time.perf_counter()
  for c in cfgs:
    exp.train_student(c, os.path.join(root, "alone", c.student.method))
  alone = time.perf_counter() - start
  start = time.perf_counter()
  exp.train_cohort(cfgs, [os.path.join(root, "cohort", c.student.method) for c in cfgs],
                   os.path.join(root, "cohort", "group"))
  together = time.perf_counter() - start
  return {"alone_s": alone, "cohort_s": together, "speedup": alone / together}


def steady(cfgs, ds, teacher, blocks: int, steps: int) -> dict:
  """Median seconds per step of the whole sweep: 7 solo steps in turn vs one cohort step."""
  mesh = sharding.make_mesh(1)
  setups = [student_lib.student_setup(c, ds, mesh, teacher) for c in cfgs]
  tv = sharding.replicate(teacher.variables, mesh)
  solo = [(steps_lib.jit_train_step(s.step, mesh, donate=False),
           sharding.replicate(s.state.replace(teacher=tv if s.teacher_variables is not None
                                              else None), mesh)) for s in setups]
  names = [c.student.method for c in cfgs]
  cohort_step = steps_lib.jit_train_step(cohort_lib.make_cohort_step(
      teacher.model, {n: s.update for n, s in zip(names, setups)}, setups[0].preprocess),
      mesh, donate=False)
  cohort_state = sharding.replicate(cohort_lib.cohort_state(setups, names, tv), mesh)
  batch = sharding.shard_batch(next(iter(setups[0].loader.host_epoch(0))), mesh)
  rng = setups[0].rng

  def run_alone():
    return [step(state, batch, rng)[1]["loss"] for step, state in solo]

  def run_cohort():
    return cohort_step(cohort_state, batch, rng)[1]["loss"]

  compile_s = {}
  for name, fn in (("alone", run_alone), ("cohort", run_cohort)):
    start = time.perf_counter()
    jax.block_until_ready(fn())  # compiles
    compile_s[name] = time.perf_counter() - start
    jax.block_until_ready(fn())
  times = {"alone": [], "cohort": []}
  for b in range(blocks):
    order = [("alone", run_alone), ("cohort", run_cohort)]
    for name, fn in (order if b % 2 == 0 else order[::-1]):
      times[name].append(time_block(fn, steps))
  alone, together = statistics.median(times["alone"]), statistics.median(times["cohort"])
  return {"alone_s_per_step": alone, "cohort_s_per_step": together,
          "speedup": alone / together, "compile_s": compile_s, "blocks": blocks,
          "steps_per_block": steps, "alone_all": times["alone"],
          "cohort_all": times["cohort"]}


def parts(cfgs, ds, teacher, blocks: int, steps: int) -> dict:
  """Median seconds of the cohort's parts: the teacher's forward, a student step without
  teacher (CE) and a KD step, alternating timed blocks: the floor of a cohort of N
  students is teacher + N x student."""
  mesh = sharding.make_mesh(1)
  ce = student_lib.student_setup(cfgs[METHODS.index("ce")], ds, mesh, None)
  kd = student_lib.student_setup(cfgs[METHODS.index("kd")], ds, mesh, teacher)
  tv = sharding.replicate(teacher.variables, mesh)
  batch = sharding.shard_batch(next(iter(ce.loader.host_epoch(0))), mesh)
  forward = jax.jit(lambda v, images: steps_lib.teacher_outputs(
      teacher.model, v, ce.preprocess(images, None)),
      compiler_options=steps_lib.compiler_options(mesh))
  ce_step = steps_lib.jit_train_step(ce.step, mesh, donate=False)
  kd_step = steps_lib.jit_train_step(kd.step, mesh, donate=False)
  ce_state = sharding.replicate(ce.state, mesh)
  kd_state = sharding.replicate(kd.state.replace(teacher=tv), mesh)
  fns = {"teacher_forward": lambda: forward(tv, batch["image"]).logits,
         "student_step_without_teacher": lambda: ce_step(ce_state, batch, ce.rng)[1]["loss"],
         "kd_step": lambda: kd_step(kd_state, batch, kd.rng)[1]["loss"]}
  for fn in fns.values():  # compile and warm up
    jax.block_until_ready(fn())
    jax.block_until_ready(fn())
  times = {name: [] for name in fns}
  for b in range(blocks):
    order = list(fns.items())
    for name, fn in (order if b % 2 == 0 else order[::-1]):
      times[name].append(time_block(fn, steps))
  return {name: statistics.median(v) for name, v in times.items()}


def torch_best(teacher: str, student: str, batch: int, variants, steps: int,
               warmup: int) -> dict:
  """PyTorch's online KD step: each variant's warm-up (compilation) and median step."""
  import step_throughput
  out = {}
  for variant in variants:
    device = "cuda" if jax.devices()[0].platform == "gpu" else "cpu"
    timed = step_throughput.torch_setup(teacher, student, batch, "float32", device, variant)
    start = time.perf_counter()
    timed(warmup)
    warm = time.perf_counter() - start
    out[variant] = {"warmup_s": warm, "step_s": statistics.median(timed(steps))}
  best = min(out, key=lambda v: out[v]["step_s"])
  return {"variants": out, "best": best}


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--pairs", default="resnet32:resnet8:128,resnet32x4:resnet8x4:64")
  parser.add_argument("--train-images", type=int, default=1280)
  parser.add_argument("--epochs", type=int, default=2)
  parser.add_argument("--blocks", type=int, default=4)
  parser.add_argument("--steps", type=int, default=3, help="steps per timed block")
  parser.add_argument("--no-torch", action="store_true")
  parser.add_argument("--parts-only", action="store_true",
                      help="only the cohort's parts (teacher forward, student step, KD step)")
  parser.add_argument("--torch-variants", default="compile+channels_last,compile")
  parser.add_argument("--out", default=os.path.join(
      os.path.dirname(os.path.abspath(__file__)), "results", "shared_teacher_cpu.jsonl"))
  args = parser.parse_args()
  if args.epochs < 1 or args.train_images < NUM_CLASSES or args.blocks < 1:
    parser.error("--epochs >= 1, --train-images >= 100 and --blocks >= 1 are needed")
  pairs = []
  for pair in args.pairs.split(","):
    names = pair.split(":")
    if len(names) != 3 or not names[2].isdigit():
      parser.error(f"--pairs entry {pair!r}; allowed: TEACHER:STUDENT:BATCH")
    pairs.append((names[0], names[1], int(names[2])))

  import step_throughput
  ds = random_long_tailed(args.train_images)
  for teacher_name, student_name, batch in pairs:
    root = tempfile.mkdtemp(prefix="shared_teacher_")
    cfgs = sweep_configs(teacher_name, student_name, batch, args.epochs, root)
    teacher = random_teacher(cfgs[0], ds)
    steps = args.epochs * (ds.num_train // batch)
    record = {"teacher": teacher_name, "student": student_name, "batch": batch,
              "methods": list(METHODS), "epochs": args.epochs, "train_images": ds.num_train,
              "steps_per_student": steps, "device": jax.devices()[0].device_kind,
              "host": step_throughput.host_description(), "jax": jax.__version__,
              "date": datetime.date.today().isoformat(),
              "load_average_start": os.getloadavg(),
              "command": " ".join(["python"] + sys.argv)}
    record["parts"] = parts(cfgs, ds, teacher, args.blocks, args.steps)
    print(json.dumps({"pair": f"{teacher_name}->{student_name}", **record["parts"]}),
          flush=True)
    if args.parts_only:
      record["load_average_end"] = os.getloadavg()
      with open(args.out, "a") as f:
        f.write(json.dumps(record) + "\n")
      continue
    record["steady"] = steady(cfgs, ds, teacher, args.blocks, args.steps)
    print(json.dumps({"pair": f"{teacher_name}->{student_name}", **record["steady"]}),
          flush=True)
    record["sweep"] = end_to_end(cfgs, ds, teacher, root)
    print(json.dumps({"pair": f"{teacher_name}->{student_name}", **record["sweep"]}),
          flush=True)
    if not args.no_torch:
      torch = torch_best(teacher_name, student_name, batch,
                         [v for v in args.torch_variants.split(",") if v],
                         max(8, args.blocks * args.steps), 3)
      best = torch["variants"][torch["best"]]
      # Per step only: a sweep's time to its table is measured end to end, both sides
      # run, by time_to_table.py (a sum of PyTorch warm-ups and steps is not a run).
      # krd_jax's mean solo step (7 methods) against PyTorch's KD step: > 1 is faster.
      torch["solo_step_vs_torch"] = best["step_s"] / (
          record["steady"]["alone_s_per_step"] / len(METHODS))
      record["torch"] = torch
      print(json.dumps({"pair": f"{teacher_name}->{student_name}", **torch}), flush=True)
    record["load_average_end"] = os.getloadavg()
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "a") as f:
      f.write(json.dumps(record) + "\n")


if __name__ == "__main__":
  main()
