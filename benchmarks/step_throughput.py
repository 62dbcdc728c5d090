"""Images/s of one student-distillation step: krd_jax (jit) against PyTorch at its best.

The step: teacher forward in inference mode, student forward and backward, CE + KD
loss (T = 4), SGD with momentum 0.9 and weight decay 5e-4. Both frameworks run the
same architectures (benchmarks/torch_reference.py mirrors krd_jax.models), batch and
optimiser, alternating timed blocks in one process; medians of per-step times after
warm-up. FLOP rates are counted from the architecture (krd_jax.models.flops: teacher
forward, student forward and backward; XLA's cost analysis, also recorded, does not see
cuDNN's convolutions on GPU), against a matmul ceiling measured in the same process.
PyTorch runs as eager, channels_last, torch.compile and both (TORCH_VARIANTS; their
warm-up, compilation included, reported apart); the headline ratio is against the
fastest. Also reports KRDistill's step time over KD's.

  python benchmarks/step_throughput.py                        # CPU, float32
  python benchmarks/step_throughput.py --dtype bfloat16       # bf16 compute
  python benchmarks/step_throughput.py --pairs resnet32:resnet8:128 --steps 20

PyTorch is a benchmark-only dependency: pip install torch==2.13.0.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from krd_jax import models, priors, sharding  # noqa: E402
from krd_jax import methods  # noqa: E402
from krd_jax.train import steps as steps_lib  # noqa: E402
from krd_jax.models import flops as model_flops  # noqa: E402
from krd_jax.train.state import create_state  # noqa: E402

NUM_CLASSES = 100
MEAN, STD = np.full(3, 0.5, np.float32), np.full(3, 0.25, np.float32)


def jax_step(teacher_name: str, student_name: str, batch: int, dtype, method: str,
             image_size: int = 32):
  """A jitted krd_jax distillation step and its initial state and batch."""
  mesh = sharding.make_mesh(1)
  teacher = models.create_model(teacher_name, NUM_CLASSES, dtype=dtype)
  student = models.create_model(student_name, NUM_CLASSES, dtype=dtype)
  x = jnp.zeros((1, image_size, image_size, 3))
  t_vars = teacher.init(jax.random.PRNGKey(0), x)
  s_vars = student.init(jax.random.PRNGKey(1), x)
  counts = np.asarray(priors_counts())
  kwargs = {}
  params = {"model": s_vars["params"]}
  if method == "krd":
    t_dim = models.feature_dim(teacher_name)
    means = np.random.default_rng(0).normal(size=(NUM_CLASSES, t_dim))
    kwargs = {"anchors": priors.aligned_etf(means), "center": priors.balanced_center(means)}
  objective = methods.objective(method, counts, **kwargs)
  if objective.init_params is not None:  # what the method trains of its own (a projector)
    example = steps_lib.example_outputs(student, s_vars, teacher, t_vars, x.shape[1:])
    params["method"] = objective.init_params(jax.random.PRNGKey(2), example)
  tx = optax.chain(optax.add_decayed_weights(5e-4), optax.sgd(0.05, momentum=0.9))
  state = create_state(params, s_vars["batch_stats"], tx,
                       teacher={"params": t_vars["params"], "batch_stats": t_vars["batch_stats"]})
  preprocess = steps_lib.make_preprocess(MEAN, STD, 4, True, dtype)
  step = steps_lib.jit_train_step(steps_lib.make_student_step(
      student, teacher, objective, tx, preprocess, 0), mesh)
  rng = np.random.default_rng(0)
  data = sharding.shard_batch({
      "image": rng.integers(0, 256, (batch, image_size, image_size, 3), dtype=np.uint8),
      "label": rng.integers(0, NUM_CLASSES, batch).astype(np.int32)}, mesh)
  state = sharding.replicate(state, mesh)
  return step, state, data


def priors_counts():
  from krd_jax.data import long_tail_counts
  return long_tail_counts(500, NUM_CLASSES, 100)


def time_jax(step, state, data, n: int, key):
  times = []
  for _ in range(n):
    start = time.perf_counter()
    state, metrics = step(state, data, key)
    jax.block_until_ready(metrics["loss"])
    times.append(time.perf_counter() - start)
  return state, times


# PyTorch as a performance-minded researcher would run it: eager, NHWC memory layout,
# torch.compile (default mode) of both networks, and both together. Also selectable:
# torch.compile's "max-autotune" mode (minutes of autotuning on a GPU; not a default).
TORCH_VARIANTS = ("eager", "channels_last", "compile", "compile+channels_last")
EXTRA_TORCH_VARIANTS = ("max_autotune", "max_autotune+channels_last")


def torch_setup(teacher_name, student_name, batch, dtype, device, variant="eager"):
  import torch
  import torch.nn.functional as F
  import torch_reference as ref

  teacher = ref.create(teacher_name, NUM_CLASSES).to(device).eval()
  student = ref.create(student_name, NUM_CLASSES).to(device).train()
  opt = torch.optim.SGD(student.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4)
  layout = torch.channels_last if "channels_last" in variant else torch.contiguous_format
  teacher, student = teacher.to(memory_format=layout), student.to(memory_format=layout)
  if "compile" in variant or "max_autotune" in variant:
    mode = "max-autotune" if "max_autotune" in variant else "default"
    teacher, student = torch.compile(teacher, mode=mode), torch.compile(student, mode=mode)
  g = torch.Generator().manual_seed(0)
  images = torch.randint(0, 256, (batch, 3, 32, 32), generator=g, dtype=torch.uint8).to(device)
  labels = torch.randint(0, NUM_CLASSES, (batch,), generator=g).to(device)
  mean = torch.tensor(MEAN, device=device).view(1, 3, 1, 1)
  std = torch.tensor(STD, device=device).view(1, 3, 1, 1)
  autocast = dtype == "bfloat16"

  def step():
    # Same work as the jax step: flip + pad-crop augmentation, normalisation.
    x = images.float() / 255.0
    flip = torch.rand(batch, device=device) < 0.5
    x = torch.where(flip.view(-1, 1, 1, 1), x.flip(3), x)
    x = F.pad(x, (4, 4, 4, 4))
    i, j = np.random.randint(0, 9, 2)
    x = ((x[:, :, i:i + 32, j:j + 32] - mean) / std).contiguous(memory_format=layout)
    with torch.autocast(device_type=device, dtype=torch.bfloat16, enabled=autocast):
      with torch.no_grad():
        t_logits, _ = teacher(x)
      s_logits, _ = student(x)
      t, s = t_logits.float() / 4.0, s_logits.float() / 4.0
      kd = F.kl_div(F.log_softmax(s, 1), F.log_softmax(t, 1), reduction="batchmean",
                    log_target=True) * 16.0
      loss = F.cross_entropy(s_logits.float(), labels) + kd
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    return loss

  def timed(n):
    times = []
    for _ in range(n):
      start = time.perf_counter()
      loss = step()
      loss.item()  # synchronises (GPU) like block_until_ready
      times.append(time.perf_counter() - start)
    return times

  return timed


def _spread(times):
  """[min, first quartile, third quartile, max] of step times, in ms."""
  q1, _, q3 = (statistics.quantiles(times, n=4, method="inclusive") if len(times) > 1
                else (times[0],) * 3)
  return [round(1e3 * v, 1) for v in (min(times), q1, q3, max(times))]


def _fmt(spread):
  return "[" + ", ".join(f"{v:.0f}" for v in spread) + "]"


def host_description() -> str:
  """The CPU model and its vector / matrix extensions, e.g. "Intel(R) Xeon(R) Processor
  (2 cores; avx2, avx512f, avx512_bf16, amx_tile)": ratios differ across these."""
  model, flags = platform.processor() or platform.machine(), set()
  try:
    with open("/proc/cpuinfo") as f:
      for line in f:
        key, _, value = line.partition(":")
        if key.strip() == "model name":
          model = value.strip()
        elif key.strip() == "flags":
          flags = set(value.split())
  except OSError:  # not Linux
    pass
  isa = [f for f in ("avx2", "avx512f", "avx512_bf16", "amx_tile") if f in flags]
  return f"{model} ({os.cpu_count()} cores{'; ' + ', '.join(isa) if isa else ''})"


def matmul_ceiling(dtype, n=2048, reps=5) -> float:
  a = jnp.ones((n, n), dtype)
  f = jax.jit(lambda a, b: a @ b)
  f(a, a).block_until_ready()
  times = []
  for _ in range(reps):
    start = time.perf_counter()
    f(a, a).block_until_ready()
    times.append(time.perf_counter() - start)
  return 2 * n ** 3 / statistics.median(times) / 1e12


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--pairs", default="resnet32x4:resnet8x4:64,resnet32:resnet8:128")
  parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
  parser.add_argument("--steps", type=int, default=20, help="timed steps per framework")
  parser.add_argument("--warmup", type=int, default=3)
  parser.add_argument("--rounds", type=int, default=4, help="alternating timed blocks")
  parser.add_argument("--no-torch", action="store_true")
  parser.add_argument("--image-size", type=int, default=32,
                      help="input side; PyTorch's mirror has only the CIFAR nets, so a "
                      "size other than 32 (e.g. 224 for resnet50:resnet18) needs --no-torch")
  parser.add_argument("--torch-variants", default=",".join(TORCH_VARIANTS),
                      help="comma-separated, from "
                      f"{', '.join(TORCH_VARIANTS + EXTRA_TORCH_VARIANTS)}")
  parser.add_argument("--json", default="", help="append results as JSON lines here")
  args = parser.parse_args()
  unknown = {v for v in args.torch_variants.split(",") if v} - set(
      TORCH_VARIANTS + EXTRA_TORCH_VARIANTS)
  if unknown:
    parser.error(f"unknown --torch-variants {sorted(unknown)}")
  if args.image_size != 32 and not args.no_torch:
    parser.error("--image-size other than 32 needs --no-torch (benchmarks/torch_reference.py "
                 "mirrors only the CIFAR networks)")

  sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
  device = jax.devices()[0]
  torch_device = "cuda" if device.platform == "gpu" else "cpu"
  dtype = jnp.dtype(args.dtype)
  ceiling = matmul_ceiling(jnp.float32)
  ceiling_bf16 = matmul_ceiling(jnp.bfloat16)
  host = host_description()
  print(f"device: {device.device_kind} ({device.platform}), jax {jax.__version__}, host {host}")
  print(f"matmul ceiling 2048^3: float32 {ceiling:.2f} TFLOP/s, bfloat16 {ceiling_bf16:.2f}")
  print("load average (1, 5, 15 min): %.2f %.2f %.2f" % os.getloadavg(), flush=True)
  results = []
  per_block = max(1, args.steps // args.rounds)
  for pair in args.pairs.split(","):
    teacher_name, student_name, batch = pair.split(":")
    batch = int(batch)
    row = {"teacher": teacher_name, "student": student_name, "batch": batch,
           "dtype": args.dtype, "device": device.device_kind, "image_size": args.image_size,
           "host": host}
    kd_step, kd_state, data = jax_step(teacher_name, student_name, batch, dtype, "kd",
                                       args.image_size)
    krd_step, krd_state, _ = jax_step(teacher_name, student_name, batch, dtype, "krd",
                                      args.image_size)
    key = jax.random.PRNGKey(0)
    xla = kd_step.lower(kd_state, data, key).compile().cost_analysis()
    xla = (xla[0] if isinstance(xla, list) else xla).get("flops", float("nan"))
    # Counted from the architecture: XLA's count misses cuDNN's convolutions on GPU.
    flops = batch * model_flops.distillation_step_flops(
        models.create_model(teacher_name, NUM_CLASSES), models.create_model(student_name, NUM_CLASSES),
        (args.image_size, args.image_size, 3))
    kd_state, _ = time_jax(kd_step, kd_state, data, args.warmup, key)
    krd_state, _ = time_jax(krd_step, krd_state, data, args.warmup, key)
    variants = [] if args.no_torch else [v for v in args.torch_variants.split(",") if v]
    torch_timed, torch_times, compile_s = {}, {}, {}
    for variant in variants:
      timed = torch_setup(teacher_name, student_name, batch, args.dtype, torch_device, variant)
      start = time.perf_counter()
      timed(args.warmup)  # compiles, for the compiled variants
      compile_s[variant] = time.perf_counter() - start
      torch_timed[variant], torch_times[variant] = timed, []
    jax_times, krd_times = [], []
    for _ in range(args.rounds):
      kd_state, t = time_jax(kd_step, kd_state, data, per_block, key)
      jax_times += t
      krd_state, t = time_jax(krd_step, krd_state, data, per_block, key)
      krd_times += t
      for variant, timed in torch_timed.items():
        torch_times[variant] += timed(per_block)
    jax_med, krd_med = statistics.median(jax_times), statistics.median(krd_times)
    row.update(jax_kd_img_s=batch / jax_med, jax_krd_img_s=batch / krd_med,
               krd_over_kd=krd_med / jax_med, jax_tflops=flops / jax_med / 1e12,
               step_gflop=flops / 1e9, xla_step_gflop=xla / 1e9, steps=len(jax_times),
               jax_spread_ms=_spread(jax_times), krd_spread_ms=_spread(krd_times),
               load_avg=os.getloadavg()[0])
    line = (f"{teacher_name}->{student_name} b{batch} {args.dtype}: krd_jax KD "
            f"{row['jax_kd_img_s']:.0f} img/s ({row['jax_tflops']:.3f} TFLOP/s counted from the "
            f"architecture ({row['step_gflop']:.1f} GFLOP per step; XLA counts "
            f"{row['xla_step_gflop']:.1f}) = "
            f"{100 * row['jax_tflops'] / (ceiling if args.dtype == 'float32' else ceiling_bf16):.0f}% "
            f"of the {args.dtype} matmul ceiling), KRDistill/KD step time {row['krd_over_kd']:.3f}")
    if torch_times:
      medians = {v: statistics.median(t) for v, t in torch_times.items()}
      best = min(medians, key=medians.get)
      row.update(torch_variants_img_s={v: batch / m for v, m in medians.items()},
                 torch_spread_ms={v: _spread(t) for v, t in torch_times.items()},
                 torch_warmup_s={v: round(c, 1) for v, c in compile_s.items()},
                 best_torch=best, ratio_best=medians[best] / jax_med)
      if "eager" in medians:  # the ratio earlier rows report
        row.update(torch_img_s=batch / medians["eager"], ratio=medians["eager"] / jax_med)
      line += "; PyTorch " + ", ".join(f"{v} {batch / m:.0f} img/s"
                                       for v, m in medians.items())
      line += (f"\n  PyTorch warm-up ({args.warmup} steps, compilation included): " +
               ", ".join(f"{v} {c:.0f} s" for v, c in compile_s.items()))
    line += "\n  step ms median [min, q1, q3, max]: " + "; ".join(
        f"{k} {1e3 * statistics.median(t):.0f} {_fmt(_spread(t))}"
        for k, t in (("krd_jax KD", jax_times), ("krd_jax KRDistill", krd_times),
                     *((f"PyTorch {v}", t) for v, t in torch_times.items())) if t)
    line += f"\n  load average now {os.getloadavg()[0]:.2f}"
    print(line, flush=True)
    results.append(row)
    if args.json:
      with open(args.json, "a") as f:
        f.write(json.dumps(row) + "\n")
  for row in results:
    if "ratio_best" in row:
      print(f"ratio krd_jax / best PyTorch ({row['best_torch']}) ({row['teacher']}->"
            f"{row['student']} b{row['batch']} {row['dtype']}): {row['ratio_best']:.2f}x")


if __name__ == "__main__":
  main()
