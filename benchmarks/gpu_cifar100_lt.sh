#!/usr/bin/env bash
# The 200-epoch CIFAR-100-LT reproduction in one call (no TensorFlow needed): CIFAR-100-LT IF = 100,
# ResNet-32x4 -> ResNet-8x4 at the 200-epoch recipe, every student method from one
# teacher kind (and KRDistill's decoupled LRD beside its KL one: eight students, one
# cohort), beside the LTKD paper's numbers (benchmarks/cifar100_lt_reproduction.py).
#
# Prepare here (once), then run through the device tool with carry [".whl", ".carry"]
# (about 58 MiB: the dataset file 55.4 MiB, the wheels 2.5 MiB; TensorBoard is optional
# and left out to stay under the 64 MiB a call carries):
#   echo /.whl/ >> .git/info/exclude
#   pip download --no-deps --only-binary=:all: --python-version 3.12 -d .whl \
#       ml_collections==1.1.0 flax==0.12.8 optax==0.2.8 chex==0.1.92 orbax-checkpoint==0.12.8 \
#       tqdm==4.70.1
#   python benchmarks/cifar100_lt_reproduction.py --prepare .carry/cifar100_lt_if100.npz
#   device run: bash benchmarks/gpu_cifar100_lt.sh ce      (the CE teacher; "la": the
#               logit-adjusted one; at most 9.5 minutes)
# The run folder stays on the machine while it is warm: the same call again resumes
# where the time limit stopped it. Results land in $OUT: device.txt, results.csv,
# summary.md, summary.csv, cifar100_lt.log and the table beside the published numbers.
source "$(dirname "$0")/gpu_env.sh"
TEACHER=${1:-ce}
REPRO="python3 benchmarks/cifar100_lt_reproduction.py"
timeout 560 $REPRO --arrays .carry/cifar100_lt_if100.npz --teachers "$TEACHER" \
    --workdir "runs/cifar100_lt_gpu_$TEACHER" --out "$OUT" 2>&1 | quiet | tee "$OUT/cifar100_lt.log"
# What finished, whatever the time limit left: each run's final record (small files).
find "runs/cifar100_lt_gpu_$TEACHER" \( -name final.json -o -name teacher.json -o -name metrics.jsonl \) \
    -exec cp --parents {} "$OUT/" \; 2>/dev/null
[ -f "$OUT/summary.csv" ] && $REPRO --summarize "$OUT/summary.csv" | tee "$OUT/table.md"
echo "total ${SECONDS} s" | tee -a "$OUT/device.txt"
