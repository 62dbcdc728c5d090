"""Seeds in parallel: 4 seeds as one vmapped program against the same 4 seeds in turn.

Two measurements per recipe, side by side in one process:
  steady  median time of one training step for all seeds: the vmapped step (one call)
          against the solo step called once per seed, in alternating timed blocks
          after warm-up (compilation excluded);
  e2e     wall time of whole student runs as a sweep runs them: 4 x
          student.train_student against one seeds.train_students_parallel, each in a
          fresh folder, compilation, evaluation and checkpoints included.
The teacher is a randomly initialised one (its quality does not change the cost).

  python benchmarks/parallel_seeds.py --recipe digits                    # ~2 min, 2 CPU cores
  python benchmarks/parallel_seeds.py --recipe cifar10_lt --e2e-epochs 1 # ~15 min, 2 CPU cores
  python benchmarks/parallel_seeds.py --recipe cifar10_random --seeds 8 --skip-e2e  # no TF

Recipes: digits = krd_jax/configs/digits_lt.py (MLP 256 -> MLP 32, 150 epochs);
cifar10_lt = krd_jax/configs/cifar10_lt.py:offline (ResNet-32 -> ResNet-8, batch
128; the CIFAR-10 folder extracted at ~/.cache/krd_jax/cifar10-jpg); cifar10_random = the
same recipe on random CIFAR-shaped images with CIFAR-10-LT's class counts (nothing to
decode, no TensorFlow: the cost of a step does not depend on the pixels), for GPU images.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from krd_jax import runs, sharding  # noqa: E402
from krd_jax.experiment import Experiment  # noqa: E402
from krd_jax.train import seeds as seeds_lib  # noqa: E402
from krd_jax.train import state as state_lib  # noqa: E402
from krd_jax.train import steps as steps_lib  # noqa: E402
from krd_jax.train import teacher as teacher_lib  # noqa: E402

RECIPES = {"digits": "digits_lt", "cifar10_lt": "cifar10_lt:offline",
           "cifar10_random": "cifar10_lt"}


def random_cifar10_lt(seed: int = 0):
  """Random uint8 32x32x3 images with CIFAR-10-LT's counts (IF 100, 12,406 training
  images) and a balanced 10,000-image test set."""
  from krd_jax.data import from_arrays, long_tail_counts
  rng = np.random.default_rng(seed)
  counts = long_tail_counts(5000, 10, 100.0)
  train_y = np.repeat(np.arange(10), counts).astype(np.int32)
  test_y = np.repeat(np.arange(10), 1000).astype(np.int32)
  image = lambda n: rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8)
  return from_arrays("cifar10_random", image(len(train_y)), train_y, image(len(test_y)),
                     test_y, num_classes=10)


def load_config(recipe: str, workdir: str) -> ml_collections.ConfigDict:
  from krd_jax import configs
  cfg = configs.get(RECIPES[recipe]).unlock()
  cfg.workdir = workdir
  cfg.progress = False
  return cfg


def with_seed(cfg: ml_collections.ConfigDict, seed: int) -> ml_collections.ConfigDict:
  out = ml_collections.ConfigDict(cfg.to_dict())
  out.seed = seed
  return out.lock()


def random_teacher(cfg, ds) -> teacher_lib.Teacher:
  model = state_lib.build_model(cfg.teacher, ds.num_classes, state_lib.compute_dtype(cfg.compute_dtype))
  variables = state_lib.init_variables(model, ds.image_shape, jax.random.PRNGKey(123))
  return teacher_lib.Teacher(model, variables, meta={}, summary={})


def time_block(fn, steps: int) -> float:
  start = time.perf_counter()
  out = None
  for _ in range(steps):
    out = fn()
  jax.block_until_ready(out)
  return (time.perf_counter() - start) / steps


def steady(cfgs, exp: Experiment, blocks: int, steps: int) -> dict:
  """Median seconds per training step of all seeds: vmapped vs solo steps in turn."""
  mesh = exp.mesh
  setups = seeds_lib.seed_setups(cfgs, exp.data, mesh, exp.teacher())
  tv = sharding.replicate(setups[0].teacher_variables, mesh) \
      if setups[0].teacher_variables is not None else None
  solo_states = [sharding.replicate(s.state.replace(teacher=tv), mesh) for s in setups]
  solo_step = steps_lib.jit_train_step(setups[0].step, mesh, donate=False)
  host = next(iter(setups[0].loader.host_epoch(0)))
  batch = sharding.shard_batch(host, mesh)
  stacked, rngs = seeds_lib.stacked_state(setups, tv, mesh)
  par_step = seeds_lib.jit_seed_step(setups[0].step, mesh, donate=False)
  stacked_batch = sharding.shard_batch({k: jnp.stack([v] * len(cfgs)) for k, v in host.items()},
                                       mesh, batch_axis=1)

  def run_solo():
    out = None
    for i, s in enumerate(solo_states):
      out = solo_step(s, batch, setups[i].rng)
    return out

  def run_par():
    return par_step(stacked, stacked_batch, rngs)

  for fn in (run_solo, run_par):  # compile and warm up
    jax.block_until_ready(fn())
    jax.block_until_ready(fn())
  solo, par = [], []
  for b in range(blocks):
    order = [(run_solo, solo), (run_par, par)]
    for fn, out in (order if b % 2 == 0 else order[::-1]):
      out.append(time_block(fn, steps))
  solo_med, par_med = statistics.median(solo), statistics.median(par)
  batch_size = cfgs[0].student.batch_size
  return {"in_turn_s_per_step": solo_med, "vmapped_s_per_step": par_med,
          "speedup": solo_med / par_med,
          "in_turn_img_per_s": len(cfgs) * batch_size / solo_med,
          "vmapped_img_per_s": len(cfgs) * batch_size / par_med,
          "blocks": blocks, "steps_per_block": steps}


def end_to_end(cfgs, exp: Experiment, root: str, repeats: int) -> dict:
  """Wall seconds of whole runs: the seeds in turn vs one vmapped group, alternating."""
  in_turn, vmapped = [], []
  for r in range(repeats):
    def turn():
      for c in cfgs:
        exp.train_student(c, os.path.join(root, f"r{r}", f"s{c.seed}"))

    def group():
      exp.train_students_parallel(
          cfgs, [os.path.join(root, f"r{r}", f"p{c.seed}") for c in cfgs],
          os.path.join(root, f"r{r}", "group"))

    order = [(turn, in_turn), (group, vmapped)]
    for fn, out in (order if r % 2 == 0 else order[::-1]):
      start = time.perf_counter()
      fn()
      out.append(time.perf_counter() - start)
  return {"in_turn_s": statistics.median(in_turn), "vmapped_s": statistics.median(vmapped),
          "speedup": statistics.median(in_turn) / statistics.median(vmapped),
          "in_turn_all": in_turn, "vmapped_all": vmapped, "repeats": repeats}


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--recipe", choices=sorted(RECIPES), default="digits")
  parser.add_argument("--seeds", type=int, default=4)
  parser.add_argument("--method", default="krd")
  parser.add_argument("--blocks", type=int, default=6)
  parser.add_argument("--steps", type=int, default=10, help="steps per timed block")
  parser.add_argument("--e2e-epochs", type=int, default=0,
                      help="student epochs of the end-to-end runs (0: the recipe's)")
  parser.add_argument("--e2e-repeats", type=int, default=2)
  parser.add_argument("--skip-e2e", action="store_true")
  parser.add_argument("--out", default=os.path.join(REPO, "benchmarks", "results",
                                                    "parallel_seeds.jsonl"))
  args = parser.parse_args()
  if args.seeds < 2:
    parser.error(f"--seeds={args.seeds}; allowed: 2 or more")

  root = tempfile.mkdtemp(prefix="parallel_seeds_")
  try:
    cfg = load_config(args.recipe, root)
    cfg.student.method = args.method
    if args.e2e_epochs:
      cfg.student.epochs = args.e2e_epochs
      cfg.eval_every_epochs = min(cfg.eval_every_epochs, args.e2e_epochs)
      cfg.checkpoint_every_epochs = min(cfg.checkpoint_every_epochs, args.e2e_epochs)
    cfg = cfg.lock()
    ds = random_cifar10_lt() if args.recipe == "cifar10_random" else runs.load_data(cfg)
    exp = Experiment(cfg, data=ds, teacher=random_teacher(cfg, ds))
    cfgs = [with_seed(cfg, s) for s in range(args.seeds)]
    result = {
        "recipe": args.recipe, "method": args.method, "seeds": args.seeds,
        "teacher": cfg.teacher.model, "student": cfg.student.model,
        "batch": cfg.student.batch_size, "student_epochs": cfg.student.epochs,
        "train_images": int(ds.num_train), "device": str(jax.devices()[0].device_kind),
        "devices": len(jax.devices()), "cpu_count": os.cpu_count(),
        "load_average": os.getloadavg(), "machine": platform.machine(),
        "jax": jax.__version__, "date": datetime.date.today().isoformat(),
        "command": " ".join(["python"] + sys.argv)}
    result["steady"] = steady(cfgs, exp, args.blocks, args.steps)
    print(json.dumps({"steady": result["steady"]}), flush=True)
    if not args.skip_e2e:
      result["e2e"] = end_to_end(cfgs, exp, os.path.join(root, "e2e"), args.e2e_repeats)
      print(json.dumps({"e2e": result["e2e"]}), flush=True)
    result["load_average_end"] = os.getloadavg()
  finally:
    shutil.rmtree(root, ignore_errors=True)
  os.makedirs(os.path.dirname(args.out), exist_ok=True)
  with open(args.out, "a") as f:
    f.write(json.dumps(result) + "\n")
  print(json.dumps(result, indent=1))


if __name__ == "__main__":
  main()
