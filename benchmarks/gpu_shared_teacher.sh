#!/usr/bin/env bash
# A sweep's time with one teacher pass per step, on a GPU, in one run (no TensorFlow needed): the 7-method x 1-seed
# sweep, each student alone against one cohort that runs the teacher once per step, and
# against PyTorch at its best (benchmarks/shared_teacher.py); first the cohort's parts
# (teacher forward, a student step without teacher, a KD step). Records are appended as
# they finish, so a timeout keeps the rest.
#
# Prepare here (once), then run through the device tool with carry [".whl"]:
#   echo /.whl/ >> .git/info/exclude
#   pip download --no-deps --only-binary=:all: --python-version 3.12 -d .whl \
#       ml_collections==1.1.0 flax==0.12.8 optax==0.2.8 chex==0.1.92 orbax-checkpoint==0.12.8 \
#       tensorboard==2.21.0 tqdm==4.70.1
#   device run: bash benchmarks/gpu_shared_teacher.sh     (at most 9.5 minutes)
# Results land in $OUT: device.txt, shared_teacher.jsonl, shared_teacher_*.log.
source "$(dirname "$0")/gpu_env.sh"
SHARED="python3 benchmarks/shared_teacher.py --out $OUT/shared_teacher.jsonl"

# 1. The parts, both CIFAR pairs.                                          ~60 s
timeout 120 $SHARED --parts-only --no-torch 2>&1 | quiet | tee "$OUT/shared_teacher_parts.log"
# 2. The sweep: 12,800 images x 2 epochs (200 / 400 steps per student), alone against
#    one cohort, and PyTorch compile + channels_last / channels_last.       ~5-7 min
timeout 420 $SHARED --train-images 12800 --epochs 2 --blocks 4 --steps 10 \
    --torch-variants compile+channels_last,channels_last 2>&1 | quiet | tee "$OUT/shared_teacher_sweep.log"
echo "total ${SECONDS} s" | tee -a "$OUT/device.txt"
