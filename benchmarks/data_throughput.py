"""Images per second delivered by krd_jax's data paths, on CIFAR-10-LT.

  python benchmarks/data_throughput.py        # folder in ~/.cache/krd_jax/cifar10-jpg
  python benchmarks/data_throughput.py --data-dir DIR --batch 128 --repeats 5

Measures, each as the median of --repeats timed runs of --steps batches (after one
warm-up run that compiles and fills tf.data buffers):

  in_memory_host      DatasetLoader of an in-memory set alone: host gather + sharded device_put.
  in_memory_augment   the same + jitted on-device augment (crop + flip) and
                      normalize, i.e. everything a training step gets before the model,
                      one jit call per batch (so it includes one dispatch per step).
  augment_only        the same jitted augment + normalize on one resident batch: the
                      device's augmentation capacity, without the loader.
  streaming_folder    tf.data over the JPEG folder: parallel decode, pad-crop + flip,
                      batch, prefetch (load_dataset("image_folder", streaming=True)).

The CIFAR-10 folder comes from the offline archive cifar10-jpg.tar.gz, extracted outside
the repository. Without it, --synthetic measures the
in-memory paths on random arrays of CIFAR-10-LT's shape and skips streaming.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

import krd_jax.data as kd
from krd_jax import sharding

DEFAULT_FOLDER = os.path.expanduser("~/.cache/krd_jax/cifar10-jpg")
CIFAR10_LT_IF100 = 12406


def _median_rate(run, repeats: int, images_per_run: int) -> float:
  run()  # Warm-up: compilation, tf.data buffers, page cache.
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    run()
    times.append(time.perf_counter() - start)
  return images_per_run / statistics.median(times)


def bench_in_memory(images, labels, mean, std, batch: int, steps: int, repeats: int):
  mesh = sharding.make_mesh()
  ds = kd.LongTailDataset(
      name="bench", num_classes=int(labels.max()) + 1,
      class_names=[str(c) for c in range(int(labels.max()) + 1)],
      train_counts=np.bincount(labels), image_shape=images.shape[1:], mean=mean, std=std,
      train_images=images, train_labels=np.asarray(labels, np.int32))
  loader = kd.DatasetLoader(ds, batch, mesh, seed=0)
  steps = min(steps, loader.steps_per_epoch)

  @jax.jit
  def consume(batch_, rng, step):
    x = kd.normalize(kd.augment(batch_["image"], jax.random.fold_in(rng, step)), mean, std)
    # A scalar that depends on every pixel, so nothing is optimised away.
    return jnp.sum(x) + jnp.sum(batch_["label"])

  epoch = iter(range(10**9))
  rng = jax.random.key(0)

  def host_only():
    last = None
    for i, b in enumerate(loader.epoch(next(epoch))):
      if i == steps:
        break
      last = b
    jax.block_until_ready(last)

  def with_augment():
    out = None
    for i, b in enumerate(loader.epoch(next(epoch))):
      if i == steps:
        break
      out = consume(b, rng, i)
    jax.block_until_ready(out)

  fixed = next(loader.epoch(0))

  def augment_only():
    out = None
    for i in range(steps):
      out = consume(fixed, rng, i)
    jax.block_until_ready(out)

  return {
      "in_memory_host": _median_rate(host_only, repeats, steps * batch),
      "in_memory_augment": _median_rate(with_augment, repeats, steps * batch),
      "augment_only": _median_rate(augment_only, repeats, steps * batch),
  }


def bench_streaming(folder: str, batch: int, steps: int, repeats: int):
  ds = kd.load_dataset("image_folder", data_dir=folder, streaming=True, image_size=32)
  steps = min(steps, ds.num_train // batch)
  epoch = iter(range(10**9))

  def run():
    for i, _ in enumerate(ds.train_stream(batch, seed=0, epoch=next(epoch))):
      if i + 1 == steps:
        break

  return {"streaming_folder": _median_rate(run, repeats, steps * batch)}


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--data-dir", default=DEFAULT_FOLDER)
  parser.add_argument("--cache-dir", default=None)
  parser.add_argument("--batch", type=int, default=128)
  parser.add_argument("--steps", type=int, default=50)
  parser.add_argument("--repeats", type=int, default=5)
  parser.add_argument("--synthetic", action="store_true",
                      help="random arrays instead of the folder (no streaming number)")
  parser.add_argument("--arrays", default=None,
                      help="a dataset saved by krd_jax.data.save_arrays (loads without "
                           "TensorFlow; no streaming number)")
  args = parser.parse_args(argv)

  have_folder = os.path.isdir(os.path.join(args.data_dir, "train")) and not args.arrays
  if args.arrays:
    ds = kd.load_arrays(args.arrays)
    images, labels, mean, std = ds.train_images, ds.train_labels, ds.mean, ds.std
  elif args.synthetic or not have_folder:
    if not args.synthetic:
      print(f"no CIFAR-10 folder at {args.data_dir}: using random arrays", file=sys.stderr)
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (CIFAR10_LT_IF100, 32, 32, 3), np.uint8)
    labels = rng.integers(0, 10, CIFAR10_LT_IF100).astype(np.int32)
    mean, std = kd.channel_stats(images)
  else:
    ds = kd.load_dataset("image_folder", data_dir=args.data_dir, imbalance=100,
                         cache_dir=args.cache_dir)
    images, labels, mean, std = ds.train_images, ds.train_labels, ds.mean, ds.std

  print(f"devices: {jax.device_count()} x {jax.devices()[0].device_kind}; "
        f"host CPUs: {os.cpu_count()}; batch {args.batch}; {args.steps} steps x "
        f"{args.repeats} repeats; {len(labels)} training images")
  results = bench_in_memory(images, labels, mean, std, args.batch, args.steps, args.repeats)
  if have_folder and not args.synthetic:
    results.update(bench_streaming(args.data_dir, args.batch, args.steps, args.repeats))
  for name, rate in results.items():
    print(f"{name:<20} {rate:>12,.0f} images/s (median)")
  print(f"tensorflow imported: {'tensorflow' in sys.modules}")
  return 0


if __name__ == "__main__":
  sys.exit(main())
