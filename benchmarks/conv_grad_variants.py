"""Which CPU kernel gradient makes the distillation step fastest: a same-process A/B.

On CPU `krd_jax.models.layers` computes each convolution's kernel gradient with
matrix products (`_kernel_grad_by_dots`) instead of XLA's transposed convolution. This
benchmark builds the KD step of benchmarks/step_throughput.py once per variant of that
gradient and times them in alternating blocks in one process (medians of per-step
times after warm-up; load average before and after):

  library       the k*k windows concatenated, then one product (layers' own)
  taps          one product per kernel tap, no concatenation (tried 2026-12-01: faster
                per layer, equal per step; not adopted)
  xla           XLA's own kernel gradient (what GPUs and TPUs run)

Speeds are printed relative to `library`.

  python benchmarks/conv_grad_variants.py                      # both CIFAR pairs
  python benchmarks/conv_grad_variants.py --pairs resnet32:resnet8:128 --rounds 6

Expected runtime: about 5 minutes on 2 CPU cores (compilation included).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys

import jax
import jax.numpy as jnp

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from krd_jax.models import layers  # noqa: E402
import step_throughput  # noqa: E402

LIBRARY = layers._kernel_grad_by_dots  # pylint: disable=protected-access


def taps(x, dy, kernel_size, strides, pad):
  """One [Cin, B*Ho*Wo] @ [B*Ho*Wo, Cout] product per kernel tap, stacked."""
  b, _, _, c = x.shape
  ho, wo, cout = dy.shape[1:]
  if pad:
    x = jnp.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0)))
  dy_flat = dy.reshape(b * ho * wo, cout)
  grads = [jnp.dot(jax.lax.slice(x, (0, i, j, 0), (b, i + (ho - 1) * strides + 1,
                                                  j + (wo - 1) * strides + 1, c),
                                 (1, strides, strides, 1)).reshape(b * ho * wo, c).T,
                   dy_flat, preferred_element_type=jnp.float32)
           for i in range(kernel_size) for j in range(kernel_size)]
  return jnp.stack(grads).reshape(kernel_size, kernel_size, c, cout).astype(dy.dtype)


def xla(x, dy, kernel_size, strides, pad):
  """XLA's transposed convolution, as the default (non-CPU) branch runs it."""
  kernel = jnp.zeros((kernel_size, kernel_size, x.shape[-1], dy.shape[-1]), dy.dtype)
  _, vjp = jax.vjp(lambda k: layers._conv(x, k, strides, pad, 1), kernel)  # pylint: disable=protected-access
  return vjp(dy)[0]


VARIANTS = {"library": LIBRARY, "taps": taps, "xla": xla}


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--pairs", default="resnet32:resnet8:128,resnet32x4:resnet8x4:64")
  parser.add_argument("--rounds", type=int, default=4)
  parser.add_argument("--steps", type=int, default=4, help="timed steps per block")
  parser.add_argument("--json", default="", help="append one JSON line per pair here")
  args = parser.parse_args()
  print(f"jax {jax.__version__}, {jax.devices()[0].device_kind}, {os.cpu_count()} CPUs; "
        "load average before %.2f %.2f %.2f" % os.getloadavg(), flush=True)
  key = jax.random.PRNGKey(0)
  for pair in args.pairs.split(","):
    teacher, student, batch = pair.split(":")
    batch = int(batch)
    built = {}
    for name, fn in VARIANTS.items():
      layers._kernel_grad_by_dots = fn  # pylint: disable=protected-access
      step, state, data = step_throughput.jax_step(teacher, student, batch, jnp.float32, "kd")
      state, _ = step_throughput.time_jax(step, state, data, 2, key)  # traces with `fn`
      built[name] = [step, state, data]
    layers._kernel_grad_by_dots = LIBRARY  # pylint: disable=protected-access
    times = {name: [] for name in VARIANTS}
    for _ in range(args.rounds):
      for name, (step, state, data) in built.items():
        state, t = step_throughput.time_jax(step, state, data, args.steps, key)
        built[name][1] = state
        times[name] += t
    medians = {name: statistics.median(t) for name, t in times.items()}
    row = {"teacher": teacher, "student": student, "batch": batch,
           "step_ms": {n: round(1e3 * m, 1) for n, m in medians.items()},
           "spread_ms": {n: step_throughput._spread(t) for n, t in times.items()},  # pylint: disable=protected-access
           "img_s": {n: round(batch / m, 1) for n, m in medians.items()},
           "steps": len(times["library"]), "load_avg_after": os.getloadavg()[0]}
    print(f"{teacher}->{student} b{batch}: " + ", ".join(
        f"{n} {row['step_ms'][n]:.0f} ms ({row['img_s'][n]:.0f} img/s, "
        f"{medians['library'] / m:.2f}x the library's speed)" for n, m in medians.items()) +
        f"; load average now {row['load_avg_after']:.2f}", flush=True)
    if args.json:
      with open(args.json, "a") as f:
        f.write(json.dumps(row) + "\n")


if __name__ == "__main__":
  main()
