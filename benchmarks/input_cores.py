"""How many host cores keep a step fed: the streamed 224-pixel path against CPU cores.

The path ImageNet-LT and iNaturalist train on (`krd_jax.data.streaming.
file_list_train_stream`, what a split list streams through): tf.data reads each JPEG,
decodes it, takes an Inception random-resized crop to 224 x 224 with a flip, batches
and prefetches. This benchmark times it over ImageNet-sized JPEGs in a worker process
pinned to 1, 2, ... cores (`os.sched_setaffinity` before TensorFlow starts, so tf.data
sizes its thread pool to them), and prints images/s per core count and per core.

  python benchmarks/input_cores.py                        # 1 and 2 cores, batch 64
  python benchmarks/input_cores.py --cores 1,2,4,8 --json input_cores.jsonl

The JPEGs are made once in ~/.cache/krd_jax/imagenet_like_jpeg_* (outside the checkout):
500 x 375 (ImageNet's most common size), quality 90, smooth random content plus grain
so each file weighs about as much as an average ImageNet training JPEG (~110 KB: 1.28M
files in ~140 GB); the
script prints their mean size. Set the cores a GPU needs against the step's
consumption (`benchmarks/step_throughput.py --pairs resnet50:resnet18:256
--image-size 224 --no-torch` on that GPU): cores = step img/s / (img/s per core).

Expected runtime: about 3 minutes on 2 CPU cores (the first run also writes 2048 JPEGs,
220 MB, in about a minute).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

import numpy as np

WIDTH, HEIGHT, GRAIN = 500, 375, 24
# The folder names what made its files: change a constant and new files are made.
CACHE = os.path.expanduser(f"~/.cache/krd_jax/imagenet_like_jpeg_{WIDTH}x{HEIGHT}_g{GRAIN}")


def make_jpegs(folder: str, count: int, seed: int = 0) -> list[str]:
  """`count` ImageNet-sized JPEGs in `folder` (made once; existing files are kept)."""
  from PIL import Image  # pylint: disable=g-import-not-at-top
  os.makedirs(folder, exist_ok=True)
  paths = [os.path.join(folder, f"{i:05d}.jpg") for i in range(count)]
  rng = np.random.default_rng(seed)
  for path in paths:
    if os.path.exists(path):
      continue
    # Low-frequency colour fields (objects, sky) plus per-pixel grain (texture): JPEG
    # sizes like photographs', where pure noise would be 3x heavier and flat fields 10x
    # lighter.
    coarse = Image.fromarray(rng.integers(0, 256, (12, 16, 3), dtype=np.uint8))
    smooth = np.asarray(coarse.resize((WIDTH, HEIGHT), Image.BICUBIC), np.float32)
    grain = rng.normal(0, GRAIN, smooth.shape)
    pixels = np.clip(smooth + grain, 0, 255).astype(np.uint8)
    Image.fromarray(pixels).save(path + ".tmp", "JPEG", quality=90)
    os.replace(path + ".tmp", path)  # never a half-written file under the final name
  return paths


def worker(args) -> dict:
  """Runs in a process pinned to `args.cores` cores; returns one record."""
  os.sched_setaffinity(0, range(args.cores))
  from krd_jax.tf_env import quiet_tensorflow  # pylint: disable=g-import-not-at-top
  quiet_tensorflow()  # TensorFlow as krd_jax's entry points start it
  from krd_jax.data import streaming  # pylint: disable=g-import-not-at-top
  paths = [os.path.join(CACHE, f"{i:05d}.jpg") for i in range(args.images)]
  labels = np.arange(len(paths)) % 10
  per_epoch = len(paths) // args.batch

  def epoch(e: int, batches: int) -> float:
    start = time.perf_counter()
    for i, batch in enumerate(streaming.file_list_train_stream(
        paths, labels, args.batch, seed=0, epoch=e, image_size=args.image_size,
        transform="inception")):
      assert batch["image"].shape == (args.batch, args.image_size, args.image_size, 3)
      if i + 1 == batches:
        break
    return time.perf_counter() - start

  epoch(0, per_epoch)  # warm-up pass: TensorFlow start, graph tracing, page cache
  rates = [per_epoch * args.batch / epoch(e, per_epoch) for e in range(1, args.repeats + 1)]
  return {"cores": args.cores, "batch": args.batch, "image_size": args.image_size,
          "img_s": statistics.median(rates), "img_s_runs": [round(r, 1) for r in rates],
          "images_per_run": per_epoch * args.batch}


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--cores", default="1,2", help="comma-separated core counts")
  parser.add_argument("--batch", type=int, default=64)
  parser.add_argument("--image-size", type=int, default=224)
  parser.add_argument("--images", type=int, default=2048, help="JPEGs streamed per timed pass "
                      "(each pass builds a new pipeline, as each epoch does: long passes amortise "
                      "tf.data's autotuning ramp like an epoch of ImageNet does)")
  parser.add_argument("--repeats", type=int, default=3, help="timed passes per core count")
  parser.add_argument("--json", default="", help="append one JSON line per core count here")
  parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
  parser.add_argument("--cores-one", type=int, dest="cores_one", help=argparse.SUPPRESS)
  args = parser.parse_args(argv)
  if args.worker:
    args.cores = args.cores_one
    print(json.dumps(worker(args)))
    return 0

  try:
    cores = [int(c) for c in args.cores.split(",") if c]
  except ValueError:
    parser.error(f"--cores takes comma-separated integers, got {args.cores!r}")
  available = len(os.sched_getaffinity(0))
  if not cores or min(cores) < 1 or max(cores) > available:
    parser.error(f"--cores must lie in 1..{available} (the cores this process may use), "
                 f"got {args.cores!r}")
  if args.images < 2 * args.batch:
    parser.error(f"--images ({args.images}) must hold at least two batches of {args.batch}")

  paths = make_jpegs(CACHE, args.images)
  kib = statistics.mean(os.path.getsize(p) for p in paths) / 1024
  sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
  from step_throughput import host_description  # pylint: disable=g-import-not-at-top
  host = host_description()
  print(f"{host}, {available} usable; load average %.2f %.2f %.2f" % os.getloadavg(),
        flush=True)
  print(f"{len(paths)} JPEGs {WIDTH}x{HEIGHT}, mean {kib:.0f} KiB; Inception crop to "
        f"{args.image_size}, batch {args.batch}, median of {args.repeats} passes", flush=True)
  for n in cores:
    out = subprocess.run(
        [sys.executable, os.path.abspath(__file__), "--worker", "--cores-one", str(n),
         "--batch", str(args.batch), "--image-size", str(args.image_size),
         "--images", str(args.images),
         "--repeats", str(args.repeats)],
        check=True, capture_output=True, text=True).stdout
    row = json.loads(out.strip().splitlines()[-1])
    row.update(host=host, jpeg_kib=round(kib, 1), load_avg_after=os.getloadavg()[0])
    print(f"{n} core(s): {row['img_s']:,.0f} img/s ({row['img_s'] / n:,.0f} per core); "
          f"passes {row['img_s_runs']}; load average now {row['load_avg_after']:.2f}",
          flush=True)
    if args.json:
      with open(args.json, "a") as f:
        f.write(json.dumps(row) + "\n")
  return 0


if __name__ == "__main__":
  sys.exit(main())
