"""Which XLA:CPU compiler options make the distillation step fastest: a same-process A/B.

Compiles the KD step of benchmarks/step_throughput.py once per set of XLA options
(`Lowered.compile(compiler_options=...)`: the same program, no restart) and times the
executables in alternating blocks (medians of per-step times after warm-up; the
optimised HLO's library fusions are counted so a no-op option shows as one). Speeds are
relative to the first set
(XLA's defaults unless --variants says otherwise).

  xla_default      jax 0.10.2's defaults: YNNPACK takes dots, convolutions, reductions
  library          what krd_jax's jitted steps compile with on CPU
                   (`steps.CPU_COMPILER_OPTIONS`: convolutions left to XLA's own emitter)
  ynn_reduce_only  YNNPACK for reductions only (dots and convolutions by XLA)
  ynn_eltwise      XLA's defaults + YNNPACK fusing element-wise producers (BatchNorm, ReLU)
  onednn           the library's options + xla_cpu_use_onednn and the oneDNN custom-call
                   rewriter (PyTorch's convolution library), where the build offers them;
                   in jax 0.10.2 it compiles to the library's HLO, so it measures the
                   A/B's own spread (a placebo)

  python benchmarks/xla_cpu_options.py                         # both CIFAR pairs
  python benchmarks/xla_cpu_options.py --pairs resnet32:resnet8:128 --rounds 6

Expected runtime: about 8 minutes on 2 CPU cores (compilation included).
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import re
import statistics
import sys

import jax
import jax.numpy as jnp

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import step_throughput  # noqa: E402

_YNN = "xla_cpu_experimental_ynn_fusion_type"


def _ynn(*types: str) -> dict:
  return {_YNN: ",".join(f"LIBRARY_FUSION_TYPE_{t}" for t in types)}


# Each set is applied on top of the library's own (`compile(compiler_options=...)`
# replaces the options it names and keeps the others); {} is the library's.
VARIANTS = {
    "xla_default": _ynn("INDIVIDUAL_DOT", "INDIVIDUAL_CONVOLUTION", "REDUCE"),
    "library": {},
    "ynn_reduce_only": _ynn("REDUCE"),
    "ynn_eltwise": _ynn("INDIVIDUAL_CONVOLUTION", "INDIVIDUAL_DOT", "ELTWISE", "REDUCE"),
    "onednn": {"xla_cpu_use_onednn": True, "xla_cpu_experimental_onednn_custom_call": True},
}


def library_calls(hlo: str) -> dict[str, int]:
  """Library fusions and custom calls in an optimised HLO module, by kind."""
  kinds = re.findall(r'"fusion_config":\{"kind":"(\w+)"', hlo)
  kinds += re.findall(r'custom_call_target="([^"]+)"', hlo)
  return dict(collections.Counter(kinds))


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--pairs", default="resnet32:resnet8:128,resnet32x4:resnet8x4:64")
  parser.add_argument("--variants", default=",".join(VARIANTS),
                      help=f"comma-separated, from {', '.join(VARIANTS)}")
  parser.add_argument("--rounds", type=int, default=4)
  parser.add_argument("--steps", type=int, default=4, help="timed steps per block")
  parser.add_argument("--json", default="", help="append one JSON line per pair here")
  args = parser.parse_args()
  names = [v for v in args.variants.split(",") if v]
  unknown = set(names) - set(VARIANTS)
  if unknown or not names:
    parser.error(f"unknown --variants {sorted(unknown)}; choose from {', '.join(VARIANTS)}")
  if jax.devices()[0].platform != "cpu":
    parser.error("these are XLA:CPU options: run on a CPU backend (JAX_PLATFORMS=cpu)")
  host = step_throughput.host_description()
  print(f"jax {jax.__version__}, {host}; load average before %.2f %.2f %.2f"
        % os.getloadavg(), flush=True)
  key = jax.random.PRNGKey(0)
  for pair in args.pairs.split(","):
    teacher, student, batch = pair.split(":")
    batch = int(batch)
    step, state, data = step_throughput.jax_step(teacher, student, batch, jnp.float32, "kd")
    lowered = step.lower(state, data, key)
    compiled, calls = {}, {}
    for name in names:
      compiled[name] = lowered.compile(compiler_options=VARIANTS[name] or None)
      calls[name] = library_calls(compiled[name].as_text())
      state, _ = step_throughput.time_jax(compiled[name], state, data, 2, key)
    times = {name: [] for name in names}
    for _ in range(args.rounds):
      for name in names:
        state, t = step_throughput.time_jax(compiled[name], state, data, args.steps, key)
        times[name] += t
    medians = {name: statistics.median(t) for name, t in times.items()}
    base = medians[names[0]]
    row = {"host": host, "teacher": teacher, "student": student, "batch": batch,
           "options": {n: VARIANTS[n] for n in names}, "library_calls": calls,
           "step_ms": {n: round(1e3 * m, 1) for n, m in medians.items()},
           "spread_ms": {n: step_throughput._spread(t) for n, t in times.items()},  # pylint: disable=protected-access
           "steps": len(times[names[0]]), "load_avg_after": os.getloadavg()[0]}
    print(f"{teacher}->{student} b{batch}:", flush=True)
    for name in names:
      print(f"  {name:16s} {row['step_ms'][name]:6.0f} ms "
            f"{step_throughput._fmt(row['spread_ms'][name])}, "  # pylint: disable=protected-access
            f"{base / medians[name]:.2f}x {names[0]}; library calls {calls[name]}", flush=True)
    print(f"  load average now {row['load_avg_after']:.2f}", flush=True)
    if args.json:
      with open(args.json, "a") as f:
        f.write(json.dumps(row) + "\n")


if __name__ == "__main__":
  main()
