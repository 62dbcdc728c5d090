"""KRDistill against the baselines on the real CIFAR-10-LT (IF = 100), with ablations.

Reads the CIFAR-10 image folder (the offline archive cifar10-jpg.tar.gz, extracted) with Pillow, so it runs
where TensorFlow is not installed (GPU images); makes it long-tailed with the
LDAM-DRW profile and draws a balanced validation split from the training images the
profile left out (used to choose KRDistill's defaults; the test set never is).
Trains one teacher, then every student row in priority order, appending one JSON
line per finished run, and stops starting new runs after --time-limit seconds.

  python benchmarks/cifar_lt_accuracy.py --folder ~/.cache/krd_jax/cifar10-jpg \
      --workdir runs/bench_c10lt --results benchmarks/results/cifar10_lt.jsonl
  python benchmarks/cifar_lt_accuracy.py --summarize benchmarks/results/cifar10_lt.jsonl
  python benchmarks/cifar_lt_accuracy.py --queue faithful \
      --workdir runs/bench_c10lt_faithful --results benchmarks/results/cifar10_lt_faithful.jsonl

Recipe: krd_jax/configs/cifar10_lt.py:cpu30 (ResNet-32 teacher, ResNet-8 student,
30 epochs each, SGD, batch 128, crop + flip). About 10 minutes on one H200 for the
first dozen rows; about 2 hours per seed of every row on 2 CPU cores.
"""

from __future__ import annotations

import argparse
import collections
import concurrent.futures
import json
import math
import os
import sys
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

# (label, student method, methods.<method> overrides). Priority order: the rows the
# issue asks for first, then default-selection variants.
ROWS = [
    ("CE", "ce", {}),
    ("KD", "kd", {}),
    ("KRDistill", "krd", {}),
    ("BKD", "bkd", {}),
    ("DKD", "dkd", {}),
    ("LRD only", "krd", {"use_rrd": False}),
    ("RRD only", "krd", {"use_rrd": True, "use_lrd": False}),
    ("LRD without swap", "krd", {"use_rrd": False, "swap": False}),
    # tau acts only where no fitted tau replaces it: tau_from="fixed" (with "auto" and a
    # validation split the fitted tau would run instead, and the row would be mislabelled).
    ("LRD without prior correction", "krd", {"use_rrd": False, "tau_from": "fixed", "tau": 0.0}),
    ("logit-adjusted CE (no teacher)", "logit_adjusted", {}),
    ("KD from a logit-adjusted teacher", "kd", {}),
    ("KRDistill with plain CE", "krd", {"ce": "ce"}),
    ("KRDistill rho=1", "krd", {"rho": 1.0}),
    ("KRDistill + RRD, lam=0", "krd", {"use_rrd": True, "lam": 0.0}),
    ("KRDistill tau=2", "krd", {"tau_from": "fixed", "tau": 2.0}),
    ("KRDistill + RRD, random ETF", "krd", {"use_rrd": True, "anchor": "random"}),
]
# Rows whose teacher is trained with logit adjustment instead of plain CE.
LA_TEACHER_ROWS = ("KD from a logit-adjusted teacher",)
# Rows repeated over seeds; "bf16" rows rerun KRDistill with bfloat16 compute.
SEEDED = ("CE", "KD", "KRDistill")


def _decode(path: str) -> np.ndarray:
  from PIL import Image
  with Image.open(path) as image:
    return np.asarray(image.convert("RGB"), np.uint8)


def read_folder(root: str, split: str) -> tuple[np.ndarray, np.ndarray, list[str]]:
  """root/split/<class>/*.jpg -> uint8 images, int32 labels (alphabetical classes)."""
  classes = sorted(os.listdir(os.path.join(root, split)))
  paths, labels = [], []
  for label, name in enumerate(classes):
    folder = os.path.join(root, split, name)
    for file in sorted(os.listdir(folder)):
      paths.append(os.path.join(folder, file))
      labels.append(label)
  with concurrent.futures.ProcessPoolExecutor(os.cpu_count()) as pool:
    images = np.stack(list(pool.map(_decode, paths, chunksize=256)))
  return images, np.asarray(labels, np.int32), classes


def load(folder: str, val_per_class: int, n_max: int):
  from krd_jax.data import from_arrays
  cache = os.path.join(os.path.expanduser("~/.cache/krd_jax"), "cifar10_folder_arrays.npz")
  if os.path.exists(cache):
    arrays = dict(np.load(cache))
    classes = [str(c) for c in arrays.pop("classes")]
  else:
    train_x, train_y, classes = read_folder(folder, "train")
    test_x, test_y, _ = read_folder(folder, "test")
    arrays = {"train_x": train_x, "train_y": train_y, "test_x": test_x, "test_y": test_y}
    os.makedirs(os.path.dirname(cache), exist_ok=True)
    np.savez(cache + ".tmp.npz", classes=np.asarray(classes), **arrays)
    os.replace(cache + ".tmp.npz", cache)
  return from_arrays("cifar10_lt_folder", arrays["train_x"], arrays["train_y"],
                     arrays["test_x"], arrays["test_y"], classes, imbalance=100.0, seed=0,
                     val_per_class=val_per_class, n_max=n_max)


def base_config(workdir: str, epochs: int, dtype: str):
  """The cifar10_lt recipe over `epochs` epochs (30: the `cpu30` recipe), everything that
  depends on the schedule scaled as the recipe scales it."""
  from krd_jax.configs import cifar10_lt
  cfg = cifar10_lt.recipe(epochs)
  cfg.workdir = workdir
  cfg.compute_dtype = dtype
  cfg.progress = False
  return cfg


# Lines of the per-class plot (seed 0 of each).
PLOTTED = ("teacher (CE)", "CE", "KD", "KRDistill", "KRDistill + logit-adjusted CE",
           "logit-adjusted CE (no teacher)")

# A second pass after the first: the val-selected variants and the remaining seeds.
FOLLOWUP = [
    ("KRDistill + logit-adjusted CE", "krd", {"ce": "logit_adjusted"}, (1, 2)),
    ("logit-adjusted CE (no teacher)", "logit_adjusted", {}, (1, 2)),
    ("KRDistill + logit-adjusted CE, rho=1", "krd", {"ce": "logit_adjusted", "rho": 1.0},
     (0, 1, 2)),
    ("BKD", "bkd", {}, (1, 2)),
    ("DKD", "dkd", {}, (1, 2)),
    ("KD from a logit-adjusted teacher", "kd", {}, (1, 2)),
]


# The rerun with every baseline at its authors' settings (krd_jax/configs/common.py,
# tests/test_recipes.py) and the rows added since: LTKD and, recorded with each teacher,
# its post-hoc logit adjustment (tau chosen on the balanced validation split).
FAITHFUL = [
    ("CE", "ce", {}), ("KD", "kd", {}), ("DKD", "dkd", {}), ("BKD", "bkd", {}),
    ("LTKD", "ltkd", {}), ("KRDistill", "krd", {}),
    ("logit-adjusted CE (no teacher)", "logit_adjusted", {}),
    ("KD from a logit-adjusted teacher", "kd", {}),
]


def work_queue(seeds: int, queue_name: str = "main") -> list[tuple[str, str, dict, int, str]]:
  """(label, method, overrides, seed, dtype) in priority order."""
  if queue_name == "faithful":  # seed by seed, so a time limit leaves whole seeds
    return [(label, method, overrides, seed, "float32")
            for seed in range(seeds) for label, method, overrides in FAITHFUL]
  if queue_name == "followup":
    return [(label, method, overrides, seed, "float32")
            for seed_index in range(3) for label, method, overrides, row_seeds in FOLLOWUP
            for seed in row_seeds[seed_index:seed_index + 1]]
  queue = [(label, method, overrides, 0, "float32") for label, method, overrides in ROWS]
  for seed in range(1, seeds):
    queue += [(label, method, overrides, seed, "float32")
              for label, method, overrides in ROWS if label in SEEDED]
  queue += [("KRDistill bf16", "krd", {}, seed, "bfloat16") for seed in range(seeds)]
  return queue


def teacher_config(args, loss: str):
  cfg = base_config(os.path.join(args.workdir, f"teacher_{loss}"), args.epochs, "float32")
  cfg.teacher.loss = loss
  return cfg.lock()


def train_teacher(args, ds, loss: str):
  """The experiment of the teacher with `loss`, trained (or loaded); recorded once."""
  from krd_jax.experiment import Experiment
  cfg = teacher_config(args, loss)
  start = time.time()
  exp = Experiment(cfg, data=ds)
  teacher = exp.teacher()
  label = f"teacher ({'CE' if loss == 'ce' else 'logit-adjusted CE'})"
  if label not in {r["label"] for r in _read(args.results)}:
    _append(args.results, {"label": label, "seed": 0, "test": teacher.summary,
                           "val": teacher.meta.get("val"), "seconds": time.time() - start,
                           "epochs": args.epochs, "dtype": "float32",
                           "train_images": int(len(ds.train_labels)),
                           "train_counts": ds.train_counts.tolist()})
    post_hoc = exp.teacher_post_hoc()
    _append(args.results, {"label": f"{label} + post-hoc LA", "seed": 0,
                           "test": post_hoc["test"], "val": post_hoc.get("val"),
                           "tau": post_hoc["tau"], "chosen_on": post_hoc["chosen_on"],
                           "epochs": args.epochs, "dtype": "float32"})
  return exp


def row_config(exp_cfg, method: str, overrides: dict, seed: int, dtype: str):
  """A row's run config, through the CLI's checks: a bad value, or an override that
  would not act (a row that would train KRDistill's default under another label), is
  refused (validate.InputError)."""
  from krd_jax import runs
  from krd_jax import validate
  run_cfg = runs.with_method(exp_cfg, method).unlock()
  run_cfg.seed = seed
  run_cfg.compute_dtype = dtype
  run_cfg.methods[method].update(overrides)
  run_cfg.lock()
  validate.check_config(run_cfg, "student")
  validate.check_knobs_act(run_cfg, [method], [f"methods.{method}.{k}" for k in overrides])
  return run_cfg


def check_rows(args) -> None:
  """Every row of the queue checked before anything trains."""
  cfg = teacher_config(args, "ce")
  for _, method, overrides, seed, dtype in work_queue(args.seeds, args.queue):
    row_config(cfg, method, overrides, seed, dtype)


def run_students(args, ds) -> None:
  """This worker's share of the queue (every N-th item), skipping finished runs."""
  import jax
  from krd_jax import runs

  worker, workers = (int(x) for x in args.worker.split("/"))
  start = time.time()
  experiments = {}
  done = {(r["label"], r["seed"]) for r in _read(args.results)}
  for index, (label, method, overrides, seed, dtype) in enumerate(work_queue(args.seeds, args.queue)):
    if index % workers != worker or (label, seed) in done:
      continue
    if time.time() - start > args.time_limit:
      print(f"[{worker}] time limit reached; not starting {label} seed {seed}", flush=True)
      break
    loss = "logit_adjusted" if label in LA_TEACHER_ROWS else "ce"
    if loss not in experiments:
      experiments[loss] = train_teacher(args, ds, loss)
    exp = experiments[loss]
    run_cfg = row_config(exp.cfg, method, overrides, seed, dtype).unlock()
    run_cfg.teacher.checkpoint = exp.teacher_dir
    run_cfg.lock()
    t0 = time.time()
    run_dir = os.path.join(args.workdir, "students", f"{label}_s{seed}".replace(" ", "_"))
    if dtype != "float32":  # the teacher computes in the run's dtype: load it so
      exp = exp.sibling(run_cfg)
    exp.train_student(run_cfg, run_dir)
    with open(os.path.join(run_dir, "final.json")) as f:
      final = json.load(f)
    record = {"label": label, "seed": seed, "method": method, "overrides": overrides,
              "test": final["test"], "val": final["val"], "seconds": time.time() - t0,
              "epochs": args.epochs, "dtype": dtype, "device": str(jax.devices()[0])}
    _append(args.results, record)
    print(f"[{worker}] {label} s{seed}: test balanced {final['test']['balanced']:.1f} "
          f"tail {final['test']['tail']:.1f} ({record['seconds']:.0f} s)", flush=True)


def run(args) -> None:
  import jax
  check_rows(args)
  ds = load(args.folder, args.val_per_class, args.n_max)
  print(f"{ds.name}: {len(ds.train_labels)} train {ds.train_counts.tolist()}, "
        f"{len(ds.val_labels)} val, {len(ds.test_labels)} test; {jax.devices()[0]}",
        flush=True)
  if args.stage == "prepare":
    return
  if args.stage == "teacher":
    train_teacher(args, ds, "ce")
    return
  run_students(args, ds)


def _append(path: str, record: dict) -> None:
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  with open(path, "a") as f:
    f.write(json.dumps(record) + "\n")


def _read(path: str) -> list[dict]:
  if not os.path.exists(path):
    return []
  with open(path) as f:
    return [json.loads(line) for line in f if line.strip()]


def summarize(path: str, plot: str = "") -> str:
  """Markdown tables (test, then val) of mean ± std over seeds, and the plot."""
  from krd_jax.train import metrics as metrics_lib
  records = _read(path)
  out = []
  for split in ("test", "val"):
    by_label = collections.OrderedDict()
    for r in records:
      if r.get(split):
        by_label.setdefault(r["label"], []).append(r[split])
    rows = {}
    for label, runs_ in by_label.items():
      name = f"{label} (n={len(runs_)})"
      rows[name] = {}
      for column in ("overall", "balanced", "many", "medium", "few", "head", "middle", "tail"):
        values = np.asarray([r[column] for r in runs_], np.float64)
        rows[name][column] = (float(values.mean()),
                              float(values.std(ddof=1)) if len(values) > 1 else 0.0)
    out.append(f"### {split}\n\n" + metrics_lib.format_table(rows))
  counts = next((r["train_counts"] for r in records if "train_counts" in r), None)
  if plot and counts is not None:
    first = {}
    for r in records:
      if r["seed"] == 0 and r["label"] in PLOTTED:
        first[r["label"]] = r["test"]["per_class"]
    metrics_lib.plot_per_class(first, np.asarray(counts), plot,
                               title="CIFAR-10-LT (IF=100): per-class test accuracy")
  return "\n\n".join(out)


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--folder", default=os.path.expanduser("~/.cache/krd_jax/cifar10-jpg"))
  parser.add_argument("--workdir", default="runs/bench_c10lt")
  parser.add_argument("--results", default="benchmarks/results/cifar10_lt.jsonl")
  parser.add_argument("--epochs", type=int, default=30)
  parser.add_argument("--seeds", type=int, default=3)
  parser.add_argument("--val-per-class", type=int, default=100)
  parser.add_argument("--n-max", type=int, default=4900,
                      help="head-class images; below 5000 so every class leaves "
                      "images for the balanced validation split")
  parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
  parser.add_argument("--time-limit", type=float, default=math.inf,
                      help="seconds after which a worker starts no new run")
  parser.add_argument("--stage", default="students", choices=["prepare", "teacher", "students"],
                      help="prepare: decode and cache the arrays; teacher: the CE teacher; "
                      "students: this worker's student runs (training teachers it needs)")
  parser.add_argument("--queue", default="main", choices=["main", "followup", "faithful"],
                      help="faithful: the baselines at their authors' settings, LTKD and "
                      "post-hoc LA, 3 seeds (write to a new --results file)")
  parser.add_argument("--worker", default="0/1", help="i/N: run every N-th queue item from i")
  parser.add_argument("--summarize", default="", help="print tables of a results file")
  parser.add_argument("--plot", default="")
  args = parser.parse_args()
  if args.summarize:
    print(summarize(args.summarize, args.plot))
  else:
    run(args)


if __name__ == "__main__":
  main()
