"""One convolution at a time: XLA:CPU against PyTorch's oneDNN, forward and backward.

Where the CPU distillation step loses to PyTorch (benchmarks/step_throughput.py), layer
by layer. For each 3x3 convolution shape of the two CIFAR pairs (stride 1, the bulk of
their FLOPs) it times, in one process and alternating:

  jax fwd        `krd_jax.models.layers` forward convolution, compiled with the options
                 the library's steps use on CPU (XLA's own emitter; --xla-defaults:
                 YNNPACK where XLA picks it)
  jax dx         its input gradient (XLA's transposed convolution)
  jax dk         its kernel gradient, XLA's own (what the library uses)
  jax dk patches the kernel gradient as patches + one matrix product (the library's CPU
                 gradient until 2026-12-01; conv_grad_variants.patches)
  torch fwd      `nn.Conv2d` forward, channels_last, no grad (oneDNN)
  torch f+b      forward + input and weight gradients, channels_last

Each is the median of --repeats calls after a warm-up call; GFLOP/s counts
2 * B * H * W * Cin * Cout * 9 per pass.

  PYTHONPATH=<torch> python benchmarks/conv_layers.py
  PYTHONPATH=<torch> python benchmarks/conv_layers.py --json conv_layers_cpu.jsonl

Expected runtime: about 1 minute on 2 CPU cores.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import statistics
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from krd_jax.models import layers  # noqa: E402
from krd_jax.train import steps as steps_lib  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import conv_grad_variants  # noqa: E402
from step_throughput import host_description  # noqa: E402

# (batch, height = width, channels): resnet32 / resnet8 stages at batch 128, then the
# x4 pairs' stages at batch 64.
SHAPES = ((128, 32, 16), (128, 16, 32), (128, 8, 64),
          (64, 32, 64), (64, 16, 128), (64, 8, 256))


def _median_ms(fn, repeats: int) -> float:
  fn()
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    fn()
    times.append(time.perf_counter() - start)
  return 1e3 * statistics.median(times)


def jax_calls(batch: int, size: int, channels: int, options: dict | None):
  """Zero-argument callables timing each jax pass of one 3x3 convolution."""
  rng = np.random.default_rng(0)
  x = jnp.asarray(rng.normal(size=(batch, size, size, channels)), jnp.float32)
  kernel = jnp.asarray(rng.normal(size=(3, 3, channels, channels)) * 0.1, jnp.float32)
  dy = jnp.asarray(rng.normal(size=x.shape), jnp.float32)
  # Compiled as the library's steps are on CPU (steps.CPU_COMPILER_OPTIONS), or with
  # XLA's defaults (YNNPACK convolutions) under --xla-defaults.
  jit = functools.partial(jax.jit, compiler_options=options)
  fwd = jit(lambda x, k: layers._conv(x, k, 1, 1, 1))  # pylint: disable=protected-access
  dx = jit(lambda x, k, dy: jax.vjp(
      lambda x: layers._conv(x, k, 1, 1, 1), x)[1](dy)[0])  # pylint: disable=protected-access
  dk = jit(lambda x, k, dy: jax.vjp(
      lambda k: layers._conv(x, k, 1, 1, 1), k)[1](dy)[0])  # pylint: disable=protected-access
  dk_patches = jit(lambda x, dy: conv_grad_variants.patches(x, dy, 3, 1, 1))
  return {
      "jax fwd": lambda: fwd(x, kernel).block_until_ready(),
      "jax dx": lambda: dx(x, kernel, dy).block_until_ready(),
      "jax dk": lambda: dk(x, kernel, dy).block_until_ready(),
      "jax dk patches": lambda: dk_patches(x, dy).block_until_ready(),
  }


def torch_calls(batch: int, size: int, channels: int):
  import torch  # pylint: disable=g-import-not-at-top
  conv = torch.nn.Conv2d(channels, channels, 3, 1, 1, bias=False).to(
      memory_format=torch.channels_last)
  x = torch.randn(batch, channels, size, size).contiguous(memory_format=torch.channels_last)
  x.requires_grad_(True)

  def fwd():
    with torch.no_grad():
      conv(x)

  def fwd_bwd():
    y = conv(x)
    y.backward(torch.ones_like(y))

  return {"torch fwd": fwd, "torch f+b": fwd_bwd}


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--repeats", type=int, default=10)
  parser.add_argument("--rounds", type=int, default=2, help="alternating blocks")
  parser.add_argument("--json", default="", help="append one JSON line per shape here")
  parser.add_argument("--xla-defaults", action="store_true",
                      help="compile with XLA's default options instead of the library's")
  args = parser.parse_args(argv)
  options = None if args.xla_defaults else steps_lib.CPU_COMPILER_OPTIONS
  try:
    import torch  # pylint: disable=g-import-not-at-top
  except ImportError:
    parser.error("needs PyTorch (a benchmark-only dependency): pip install torch==2.13.0")
  torch.set_num_threads(os.cpu_count())
  host = host_description()
  print(f"jax {jax.__version__}, torch {torch.__version__} ({torch.get_num_threads()} threads), "
        f"{host}; load average %.2f %.2f %.2f" % os.getloadavg(), flush=True)
  for batch, size, channels in SHAPES:
    calls = {**jax_calls(batch, size, channels, options), **torch_calls(batch, size, channels)}
    times = {name: [] for name in calls}
    for _ in range(args.rounds):
      for name, fn in calls.items():
        times[name].append(_median_ms(fn, args.repeats))
    ms = {name: statistics.median(t) for name, t in times.items()}
    gflop = 2 * batch * size * size * channels * channels * 9 / 1e9
    jax_total = ms["jax fwd"] + ms["jax dx"] + ms["jax dk"]
    row = {"host": host, "xla_options": "xla defaults" if args.xla_defaults else "library",
           "batch": batch, "size": size, "channels": channels, "gflop_per_pass": gflop,
           "ms": {k: round(v, 2) for k, v in ms.items()},
           "fwd_ratio": ms["torch fwd"] / ms["jax fwd"],
           "fwd_bwd_ratio": ms["torch f+b"] / jax_total,
           "load_avg_after": os.getloadavg()[0]}
    print(f"B{batch} {size}x{size}x{channels}: " + ", ".join(
        f"{k} {v:.1f} ms" for k, v in ms.items()) +
        f" | jax fwd {gflop / ms['jax fwd'] * 1e3:.0f} GFLOP/s, torch fwd "
        f"{gflop / ms['torch fwd'] * 1e3:.0f}; krd_jax / PyTorch speed: forward "
        f"{row['fwd_ratio']:.2f}x, forward + backward {row['fwd_bwd_ratio']:.2f}x", flush=True)
    if args.json:
      with open(args.json, "a") as f:
        f.write(json.dumps(row) + "\n")
  print("load average now %.2f" % os.getloadavg()[0])
  return 0


if __name__ == "__main__":
  sys.exit(main())
