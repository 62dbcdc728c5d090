"""What one step of every distiller costs against a KD step, alone and in one cohort.

The CPU recipe's pair (ResNet-14 -> ResNet-8, batch 128) on random CIFAR-shaped data with
CIFAR-100-LT's IF-100 profile (10,847 training images, so CRD's banks have their real
size) and a random teacher (its quality does not change the cost). Each distiller at the
CIFAR recipe's settings (configs/cifar100_lt.py `cpu`), K = 16,384 negatives for CRD.
Measured in one process, alternating timed blocks, medians: KD's solo step, each
distiller's solo step (its ratio to KD's), and one cohort step of all of them (the
teacher's logits, features and stage maps once) against the sum of their solo steps.

  python benchmarks/distiller_cost.py                  # ~10-15 min on 2 CPU cores
  python benchmarks/distiller_cost.py --methods kd,at,crd --blocks 2
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import statistics
import sys

import jax
import ml_collections

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from krd_jax import runs, sharding  # noqa: E402
from krd_jax import validate  # noqa: E402
from krd_jax.configs import cifar100_lt  # noqa: E402
from krd_jax.train import cohort as cohort_lib  # noqa: E402
from krd_jax.train import steps as steps_lib  # noqa: E402
from krd_jax.train import student as student_lib  # noqa: E402
from parallel_seeds import random_teacher, time_block  # noqa: E402
from shared_teacher import random_long_tailed  # noqa: E402

DISTILLERS = ("kd", "dkd", "bkd", "ltkd", "krd", "fitnet", "at", "pkt", "rkd", "dist",
              "lskd", "ctkd", "crd", "reviewkd")


def configs(methods, workdir: str) -> list[ml_collections.ConfigDict]:
  """Each method's run of the CPU recipe, checked as the CLI checks it."""
  cfg = ml_collections.ConfigDict(cifar100_lt.get_config("cpu").to_dict())
  cfg.workdir, cfg.progress, cfg.num_devices = workdir, False, 1
  cfg = cfg.lock()
  out = [runs.with_method(cfg, m) for m in methods]
  for c in out:
    validate.check_config(c, "student")
  return out


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--methods", default=",".join(DISTILLERS))
  parser.add_argument("--train-images", type=int, default=10847)
  parser.add_argument("--blocks", type=int, default=3)
  parser.add_argument("--steps", type=int, default=2, help="steps per timed block")
  parser.add_argument("--out", default=os.path.join(
      os.path.dirname(os.path.abspath(__file__)), "results", "distiller_cost_cpu.jsonl"))
  args = parser.parse_args()
  methods = [m for m in args.methods.split(",") if m]
  if "kd" not in methods:
    parser.error("--methods must include kd (the reference)")
  import step_throughput
  ds = random_long_tailed(args.train_images)
  cfgs = configs(methods, "/tmp/distiller_cost")
  teacher = random_teacher(cfgs[0], ds)
  mesh = sharding.make_mesh(1)
  setups = [student_lib.student_setup(c, ds, mesh, teacher) for c in cfgs]
  tv = sharding.replicate(teacher.variables, mesh)
  batch = sharding.shard_batch(next(iter(setups[0].loader.host_epoch(0))), mesh)
  rng = setups[0].rng
  fns = {}
  for name, s in zip(methods, setups):
    step = steps_lib.jit_train_step(s.step, mesh, donate=False)
    state = sharding.replicate(s.state.replace(teacher=tv), mesh)
    fns[name] = (lambda step=step, state=state: step(state, batch, rng)[1]["loss"])
  names = cohort_lib.member_names(cfgs)
  cohort_step = steps_lib.jit_train_step(cohort_lib.make_cohort_step(
      teacher.model, {n: s.update for n, s in zip(names, setups)}, setups[0].preprocess,
      any(s.reads_teacher_stages for s in setups)), mesh, donate=False)
  cohort_state = sharding.replicate(cohort_lib.cohort_state(setups, names, tv), mesh)
  fns["cohort"] = lambda: cohort_step(cohort_state, batch, rng)[1]["loss"]
  for fn in fns.values():  # compile, warm up
    jax.block_until_ready(fn())
    jax.block_until_ready(fn())
  times = {name: [] for name in fns}
  start_load = os.getloadavg()
  for b in range(args.blocks):
    order = list(fns.items())
    for name, fn in (order if b % 2 == 0 else order[::-1]):
      times[name].append(time_block(fn, args.steps))
  median = {name: statistics.median(v) for name, v in times.items()}
  solo_sum = sum(median[m] for m in methods)
  record = {"pair": "resnet14->resnet8", "batch": 128, "train_images": ds.num_train,
            "methods": methods, "seconds_per_step": median,
            "ratio_to_kd": {m: median[m] / median["kd"] for m in methods},
            "cohort_ratio_to_kd": median["cohort"] / median["kd"],
            "cohort_vs_solo_sum": solo_sum / median["cohort"],
            "blocks": args.blocks, "steps_per_block": args.steps,
            "device": jax.devices()[0].device_kind, "host": step_throughput.host_description(),
            "jax": jax.__version__, "date": datetime.date.today().isoformat(),
            "load_average_start": start_load, "load_average_end": os.getloadavg(),
            "command": " ".join(["python"] + sys.argv)}
  print(json.dumps(record, indent=1), flush=True)
  os.makedirs(os.path.dirname(args.out), exist_ok=True)
  with open(args.out, "a") as f:
    f.write(json.dumps(record) + "\n")


if __name__ == "__main__":
  main()
