#!/usr/bin/env bash
# The GPU step-throughput measurements in one run (no TensorFlow on the GPU image): the step
# against every PyTorch variant in float32 and bf16, throughput against batch size, and
# seeds in parallel. Every record is appended as it finishes, so a timeout keeps the
# rest.
#
# Prepare here (once), then run through the device tool with carry [".whl"]:
#   echo /.whl/ >> .git/info/exclude
#   pip download --no-deps --only-binary=:all: --python-version 3.12 -d .whl \
#       ml_collections==1.1.0 flax==0.12.8 optax==0.2.8 chex==0.1.92 orbax-checkpoint==0.12.8
#   device run: bash benchmarks/gpu_throughput.sh       (at most 9.5 minutes on one H200)
# Results land in $OUT: device.txt, step_*.log, step_throughput.jsonl, parallel_seeds.jsonl.
# Not covered here (no TensorFlow there): the tf.data input side, which
# benchmarks/input_cores.py (retired, git show 177365d:benchmarks/input_cores.py; images/s per host core) and data_throughput.py measure on a
# host with TensorFlow; step 5's ResNet-50 -> ResNet-18 img/s over input_cores' rate per
# core is the number of host cores this GPU needs.
source "$(dirname "$0")/gpu_env.sh"
ST="python3 benchmarks/step_throughput.py --warmup 3 --json $OUT/step_throughput.jsonl"

# 1. float32, both CIFAR pairs at their batches, every default PyTorch variant
#    (torch.compile's warm-up, compilation included, is reported apart).    ~150 s
timeout 170 $ST --steps 40 --rounds 4 2>&1 | quiet | tee "$OUT/step_float32.log"
# 2. bf16 compute against PyTorch's bf16 autocast (eager, channels_last, compiled).  ~90 s
timeout 100 $ST --steps 40 --rounds 4 --dtype bfloat16 \
    --torch-variants eager,channels_last,compile+channels_last 2>&1 | quiet | tee "$OUT/step_bfloat16.log"
# 3. Batch size 128 ... 1024, against PyTorch channels_last (eager: no recompilation
#    per batch size).                                                        ~90 s
timeout 90 $ST --steps 20 --rounds 2 --torch-variants channels_last \
    --pairs resnet32x4:resnet8x4:128,resnet32x4:resnet8x4:256,resnet32x4:resnet8x4:512,resnet32x4:resnet8x4:1024,resnet32:resnet8:256,resnet32:resnet8:512,resnet32:resnet8:1024 \
    2>&1 | quiet | tee "$OUT/step_batches.log"
# 4. Seeds in parallel on resnet32 -> resnet8 (batch 128): all seeds' images/s, vmapped
#    against in turn (in turn = one seed's rate), for 2, 4 and 8 seeds.      ~90 s
for n in 2 4 8; do
  timeout 35 python3 benchmarks/parallel_seeds.py --recipe cifar10_random --seeds $n \
      --skip-e2e --blocks 4 --steps 10 --out "$OUT/parallel_seeds.jsonl" 2>&1 | quiet | head -1
done
# 5. The ImageNet pair's appetite for the input side: krd_jax ResNet-50 -> ResNet-18 at
#    224 pixels (no PyTorch mirror of these nets); host cores needed = this img/s over
#    benchmarks/input_cores.py's img/s per core.                             ~60 s
timeout 70 $ST --steps 10 --rounds 2 --no-torch --image-size 224 \
    --pairs resnet50:resnet18:128,resnet50:resnet18:256 2>&1 | quiet | tee "$OUT/step_imagenet.log"
# 6. torch.compile max-autotune on the large pair, float32, if the budget allows.
[ "$SECONDS" -lt 500 ] && timeout 50 $ST --steps 20 --rounds 2 --pairs resnet32x4:resnet8x4:64 \
    --torch-variants compile+channels_last,max_autotune+channels_last 2>&1 | quiet | tee "$OUT/step_max_autotune.log"
echo "total ${SECONDS} s" | tee -a "$OUT/device.txt"
