"""Time to a sweep's table, end to end: `python -m krd_jax.ablate` against PyTorch at its
best running the same students, from the same trained teacher, on the same data.

A sweep of --methods (one seed, --epochs student epochs of the CIFAR-100-LT `cpu,val`
recipe) is run as a user runs it, each timed as wall time from launching the command to
its last result written:
  krd_jax   `python -m krd_jax.ablate ... --methods M --seeds 0,` in a fresh workdir holding a
            copy of the trained teacher (one cohort: the teacher runs once per step), with
            XLA's persistent compilation cache off (JAX_COMPILATION_CACHE_DIR empty: every
            run compiles; the CLI's default until 2026-12-07) and on (a fresh folder: the
            second run reads what the first compiled; the CLI's default since).
  PyTorch   benchmarks/torch_student.py once per method, in turn (one process each, as
            the authors' repositories run), torch.compile + channels_last, the inductor
            cache as the previous run left it (run 2: warm).
Each side is run twice, the sides taking turns; the second run is the one a user's
second sweep sees.
Both sides: the same training images and order of magnitude of work (the same batch, steps,
augmentation and recipe), validation and test evaluated, the post-hoc tau chosen on
validation, weights saved. krd_jax also writes its reports and plot. The data (our
decoded cache, exported to arrays for PyTorch) and the teacher's training are not timed.

  python benchmarks/time_to_table.py --teacher-dir /tmp/abl/c100/teachers/aee5d0b7c3
  # about 25 min on 2 CPU cores at --epochs 1; nothing else may run meanwhile

Appends one JSON line per run to results/time_to_table_cpu.jsonl.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

import jax
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from krd_jax import configs, runs  # noqa: E402
from krd_jax.experiment import load_data  # noqa: E402
from krd_jax.train import evaluation  # noqa: E402
from krd_jax.train import teacher as teacher_lib  # noqa: E402
from step_throughput import host_description  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
CONFIG = "cifar100_lt:offline,cpu,val"


def torch_order(variables: dict, depth: int) -> list[np.ndarray]:
  """A Flax CIFAR ResNet's variables in the order torch_reference's model registers its
  parameters, then its BN running statistics (conv kernels OIHW, the classifier (out,
  in)): the mapping tests/test_models.py checks logit for logit on resnet8."""
  params, stats = _flat(variables["params"]), _flat(variables["batch_stats"])
  modules = [("conv1",), ("bn1",)]
  for stage in (1, 2, 3):
    for i in range((depth - 2) // 6):
      block = f"layer{stage}_{i}"
      modules += [(block, m) for m in ("conv1", "bn1", "conv2", "bn2")]
      if (block, "downsample_conv", "kernel") in params:
        modules += [(block, "downsample_conv"), (block, "downsample_bn")]
  modules.append(("fc",))
  is_bn = [m[-1].endswith("bn") or m[-1].startswith("bn") for m in modules]
  out = []
  for m, bn in zip(modules, is_bn):
    if bn:
      out += [params[m + ("scale",)], params[m + ("bias",)]]
    elif m == ("fc",):
      out += [params[m + ("kernel",)].T, params[m + ("bias",)]]
    else:
      out.append(params[m + ("kernel",)].transpose(3, 2, 0, 1))
  for m, bn in zip(modules, is_bn):
    if bn:
      out += [stats[m + ("mean",)], stats[m + ("var",)]]
  return [np.ascontiguousarray(np.asarray(a, np.float32)) for a in out]


def _flat(tree: dict) -> dict:
  from flax import traverse_util
  return {k: np.asarray(v) for k, v in traverse_util.flatten_dict(jax.device_get(tree)).items()}


def export(cfg, teacher_dir: str, folder: str) -> tuple[str, str, dict]:
  """The arrays, the teacher's weights and the recipe PyTorch's runs read."""
  ds = load_data(cfg)
  data = os.path.join(folder, "data.npz")
  np.savez(data, train_images=ds.train_images, train_labels=ds.train_labels,
           val_images=ds.val_images, val_labels=ds.val_labels, test_images=ds.test_images,
           test_labels=ds.test_labels, train_counts=ds.train_counts, mean=ds.mean,
           std=ds.std)
  teacher = teacher_lib.load_teacher(cfg.teacher, cfg.compute_dtype, ds, runs.make_mesh(cfg),
                                     teacher_dir)
  depth = int(cfg.teacher.model.removeprefix("resnet"))
  weights = os.path.join(folder, "teacher.npz")
  np.savez(weights, *torch_order(teacher.variables, depth))
  s = cfg.student
  recipe = {"epochs": s.epochs, "batch": s.batch_size, "lr": s.optim.lr,
            "momentum": s.optim.momentum, "weight_decay": s.optim.weight_decay,
            "warmup_epochs": s.optim.warmup_epochs, "step_epochs": list(s.optim.step_epochs),
            "step_gamma": s.optim.step_gamma, "teacher_model": cfg.teacher.model,
            "student_model": s.model, "taus": [float(t) for t in evaluation.POST_HOC_TAUS],
            "steps_per_epoch": ds.num_train // s.batch_size}
  recipe["torch_teacher_balanced"] = torch_teacher_accuracy(data, weights, cfg.teacher.model)
  recipe["teacher_balanced"] = float(teacher.summary["balanced"])
  return data, weights, recipe


def torch_teacher_accuracy(data: str, weights: str, model: str) -> float:
  """The exported teacher's balanced test accuracy in PyTorch: the port is checked on
  the real weights before anything is timed."""
  import torch
  import torch_student
  d = np.load(data)
  teacher = torch_student.load_teacher(weights, model, len(d["train_counts"]))
  z = torch_student.logits_of(teacher, d["test_images"], torch.tensor(d["mean"]).view(1, 3, 1, 1),
                              torch.tensor(d["std"]).view(1, 3, 1, 1), torch.channels_last)
  return torch_student.balanced(z.argmax(1), d["test_labels"], len(d["train_counts"]))


def jax_sweep(args, teacher_dir: str, workdir: str, env: dict) -> dict:
  os.makedirs(os.path.join(workdir, "teachers"))
  shutil.copytree(teacher_dir, os.path.join(workdir, "teachers",
                                            os.path.basename(teacher_dir)))
  cmd = [sys.executable, "-m", "krd_jax.ablate", f"--config={CONFIG}",
         f"--config.student.epochs={args.epochs}", "--config.progress=False",
         f"--methods={args.methods}", "--seeds=0,", f"--workdir={workdir}"]
  start = time.perf_counter()
  proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
  wall = time.perf_counter() - start
  if proc.returncode != 0:
    sys.exit(f"krd_jax sweep failed:\n{proc.stderr[-3000:]}")
  reused = [line for line in proc.stderr.splitlines() if "(reused)" in line]
  if reused:  # the comparison needs every student trained, not read back
    sys.exit(f"the krd_jax sweep reused runs: {reused}")
  with open(os.path.join(workdir, "results.csv")) as f:
    table = f.read()
  return {"wall_s": wall, "table": table}


def torch_sweep(args, data: str, weights: str, recipe: dict, cfg, folder: str) -> dict:
  per_method, start = {}, time.perf_counter()
  for method in args.methods.split(","):
    hp = {k: v for k, v in cfg.methods[method].to_dict().items()}
    r = dict(recipe, hparams=hp)
    out = os.path.join(folder, f"{method}.json")
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, os.path.join(HERE, "torch_student.py"),
                           "--data", data, "--teacher", weights, "--recipe", json.dumps(r),
                           "--method", method, "--out", out], capture_output=True, text=True)
    if proc.returncode != 0:
      sys.exit(f"PyTorch {method} failed:\n{proc.stderr[-3000:]}")
    with open(out) as f:
      per_method[method] = dict(json.load(f), process_s=time.perf_counter() - t0)
  return {"wall_s": time.perf_counter() - start, "runs": per_method}


def main() -> None:
  p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  p.add_argument("--teacher-dir", required=True, help="a trained teacher of the recipe")
  p.add_argument("--methods", default="ce,kd,dkd,bkd,logit_adjusted")
  p.add_argument("--epochs", type=int, default=1)
  p.add_argument("--sides", default="torch,jax,jax_cached")
  p.add_argument("--runs", type=int, default=2, help="runs of each side, in a row")
  p.add_argument("--out", default=os.path.join(HERE, "results", "time_to_table_cpu.jsonl"))
  args = p.parse_args()
  cfg = configs.get(CONFIG).unlock()
  cfg.student.epochs = args.epochs
  root = tempfile.mkdtemp(prefix="time_to_table_")
  data, weights, recipe = export(cfg, args.teacher_dir, root)
  common = {"date": datetime.datetime.now().isoformat(timespec="seconds"),
            "machine": host_description(), "methods": args.methods, "epochs": args.epochs,
            "steps_per_student": recipe["steps_per_epoch"] * args.epochs,
            "command": "python benchmarks/" + " ".join(
                [os.path.basename(sys.argv[0]), *sys.argv[1:]]),
            "jax": jax.__version__, "teacher_balanced": recipe["teacher_balanced"],
            "torch_teacher_balanced": recipe["torch_teacher_balanced"]}
  env = dict(os.environ, JAX_COMPILATION_CACHE_DIR="")  # off
  cached = dict(env, JAX_COMPILATION_CACHE_DIR=os.path.join(root, "xla_cache"))
  # Runs outer, sides inner: each side's second run lies in the same stretch of time as
  # the other's (a shared machine drifts by tens of percent over an hour).
  for run in range(1, args.runs + 1):
    for side in args.sides.split(","):
      folder = os.path.join(root, f"{side}{run}")
      os.makedirs(folder)
      if side == "torch":
        import torch
        result = dict(torch_sweep(args, data, weights, recipe, cfg, folder),
                      torch=torch.__version__)
      else:
        result = jax_sweep(args, args.teacher_dir, os.path.join(folder, "w"),
                           cached if side == "jax_cached" else env)
      row = dict(common, side=side, run=run, **result)
      print(json.dumps({k: v for k, v in row.items() if k != "table"}), flush=True)
      with open(args.out, "a") as f:
        f.write(json.dumps(row) + "\n")
  shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
  main()
