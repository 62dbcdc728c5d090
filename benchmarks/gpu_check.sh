#!/usr/bin/env bash
# The GPU check for a lent device (no TensorFlow there): step throughput against
# PyTorch, then the CIFAR-10-LT accuracy benchmark from the offline JPEG folder.
#
# Prepare here (once), then run through the device tool with carry [".whl", ".carry"]:
#   echo /.whl/ >> .git/info/exclude; echo /.carry/ >> .git/info/exclude
#   pip download --no-deps --only-binary=:all: --python-version 3.12 -d .whl \
#       ml_collections==1.1.0 flax==0.12.8 optax==0.2.8 chex==0.1.92 orbax-checkpoint==0.12.8
#   mkdir -p .carry && cp /path/to/cifar10-jpg.tar.gz .carry/
#   device run: bash benchmarks/gpu_check.sh        (about 9 minutes on one H200)
# Results land in $OUT: throughput.log/jsonl, accuracy logs, cifar10_lt.jsonl, summary.md.
set -uo pipefail
export PYTHONUNBUFFERED=1 TF_CPP_MIN_LOG_LEVEL=3 XLA_PYTHON_CLIENT_PREALLOCATE=false
OUT=${OUT:-/tmp/gpu_out}
BUDGET=${BUDGET:-540}   # seconds this script may use in all
WORKERS=${WORKERS:-8}
EPOCHS=${EPOCHS:-30}
STEPS=${STEPS:-40}
START=$SECONDS
left() { echo $((BUDGET - (SECONDS - START))); }
mkdir -p "$OUT"
python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site ${WHL_DIR:-.whl}/*.whl
export PYTHONPATH=/tmp/site:$PWD${PYTHONPATH:+:$PYTHONPATH}
{ nvidia-smi -L; python3 -c "import jax, torch; print('jax', jax.__version__, jax.devices(), 'torch', torch.__version__)"; git rev-parse --short HEAD 2>/dev/null; date -u; } | tee "$OUT/device.txt"
mkdir -p /tmp/cifar && tar xzf ${CIFAR_TGZ:-.carry/cifar10-jpg.tar.gz} -C /tmp/cifar
ACC="python3 benchmarks/cifar_lt_accuracy.py --folder /tmp/cifar --workdir /tmp/bench --results $OUT/cifar10_lt.jsonl --epochs $EPOCHS"

# Decode the JPEGs on the CPUs while the GPU measures throughput.
$ACC --stage prepare > "$OUT/prepare.log" 2>&1 &
PREP=$!
timeout 100 python3 benchmarks/step_throughput.py --steps $STEPS --rounds 4 --json "$OUT/throughput.jsonl" 2>&1 | grep -v Warning | tee "$OUT/throughput.log"
timeout 45 python3 benchmarks/step_throughput.py --dtype bfloat16 --pairs resnet32x4:resnet8x4:64 --steps $STEPS --rounds 4 --json "$OUT/throughput.jsonl" 2>&1 | grep -v Warning | tee -a "$OUT/throughput.log"
wait $PREP; tail -2 "$OUT/prepare.log"

timeout $(( $(left) - 30 )) $ACC --stage teacher 2>&1 | tee "$OUT/teacher.log" | tail -3
LIMIT=$(( $(left) - 120 ))
for i in $(seq 0 $((WORKERS - 1))); do
  timeout $(( $(left) - 25 )) $ACC --worker $i/$WORKERS --time-limit $LIMIT > "$OUT/worker$i.log" 2>&1 &
done
wait
grep -h "test balanced" "$OUT"/worker*.log
python3 benchmarks/cifar_lt_accuracy.py --summarize "$OUT/cifar10_lt.jsonl" --plot "$OUT/per_class_accuracy.png" | tee "$OUT/summary.md"
echo "total $((SECONDS - START)) s"
