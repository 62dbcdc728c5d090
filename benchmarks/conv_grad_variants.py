"""Which CPU kernel gradient makes the distillation step fastest: a same-process A/B.

Builds the KD step of benchmarks/step_throughput.py (compiled, like every krd_jax step
on CPU, with `steps.CPU_COMPILER_OPTIONS`) once per way of computing each convolution's
kernel gradient and times them in alternating blocks in one process (medians of
per-step times after warm-up; load average before and after):

  library       XLA's own kernel gradient, what `krd_jax.models.layers` uses (since
                2026-12-01, with convolutions on XLA's own CPU emitter)
  patches       the k*k shifted windows of the input concatenated, then one matrix
                product: the layer's CPU gradient until 2026-12-01 (faster while XLA:CPU
                ran convolutions through YNNPACK; 0.78-0.97x of XLA's own since)
  taps          one product per kernel tap, no concatenation (tried 2026-12-01: equal
                to `patches` on the step; not adopted)

Speeds are printed relative to `library`.

  python benchmarks/conv_grad_variants.py                      # both CIFAR pairs
  python benchmarks/conv_grad_variants.py --pairs resnet32:resnet8:128 --rounds 6

Expected runtime: about 6 minutes on 2 CPU cores (compilation included).
"""

from __future__ import annotations

import argparse
import functools
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

LIBRARY_CONV = layers._conv  # pylint: disable=protected-access


def _windows(x, dy, kernel_size, strides, pad):
  """The k*k strided windows of the padded input that meet dy, each [B*Ho*Wo, Cin]."""
  b, _, _, c = x.shape
  ho, wo = dy.shape[1], dy.shape[2]
  if pad:
    x = jnp.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0)))
  return [jax.lax.slice(x, (0, i, j, 0), (b, i + (ho - 1) * strides + 1,
                                           j + (wo - 1) * strides + 1, c),
                        (1, strides, strides, 1)).reshape(b * ho * wo, c)
          for i in range(kernel_size) for j in range(kernel_size)]


def patches(x, dy, kernel_size, strides, pad):
  """dy^T [Cout, B*H*W] @ patches [B*H*W, k*k*Cin], reshaped to HWIO."""
  cin, cout = x.shape[-1], dy.shape[-1]
  windows = _windows(x, dy, kernel_size, strides, pad)
  stacked = windows[0] if len(windows) == 1 else jnp.concatenate(windows, axis=1)
  grad = jnp.dot(dy.reshape(-1, cout).T, stacked, preferred_element_type=jnp.float32)
  return grad.reshape(cout, kernel_size, kernel_size, cin).transpose(1, 2, 3, 0)


def taps(x, dy, kernel_size, strides, pad):
  """One [Cin, B*Ho*Wo] @ [B*Ho*Wo, Cout] product per kernel tap, stacked."""
  cin, cout = x.shape[-1], dy.shape[-1]
  dy_flat = dy.reshape(-1, cout)
  grads = [jnp.dot(w.T, dy_flat, preferred_element_type=jnp.float32)
           for w in _windows(x, dy, kernel_size, strides, pad)]
  return jnp.stack(grads).reshape(kernel_size, kernel_size, cin, cout)


def conv_with_kernel_grad(kernel_grad):
  """`layers._conv` whose ungrouped kernel gradient is `kernel_grad(x, dy, k, s, pad)`
  (the input gradient stays XLA's own)."""
  @functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3))
  def conv(x, kernel, strides, pad):
    return LIBRARY_CONV(x, kernel, strides, pad, 1)

  def fwd(x, kernel, strides, pad):
    return conv(x, kernel, strides, pad), (x, kernel)

  def bwd(strides, pad, residuals, dy):
    x, kernel = residuals
    dx = jax.vjp(lambda x: LIBRARY_CONV(x, kernel, strides, pad, 1), x)[1](dy)[0]
    dk = kernel_grad(x, dy, kernel.shape[0], strides, pad).astype(kernel.dtype)
    return dx, dk

  conv.defvjp(fwd, bwd)

  def call(x, kernel, strides, pad, groups):
    if groups != 1:
      return LIBRARY_CONV(x, kernel, strides, pad, groups)
    return conv(x, kernel, strides, pad)

  return call


VARIANTS = {"library": LIBRARY_CONV, "patches": conv_with_kernel_grad(patches),
            "taps": conv_with_kernel_grad(taps)}


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
      layers._conv = fn  # pylint: disable=protected-access
      step, state, data = step_throughput.jax_step(teacher, student, batch, jnp.float32, "kd")
      state, _ = step_throughput.time_jax(step, state, data, 2, key)  # traces with `fn`
      built[name] = [step, state, data]
    layers._conv = LIBRARY_CONV  # pylint: disable=protected-access
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
