# Sourced by the one-call GPU scripts (gpu_throughput.sh, gpu_shared_teacher.sh): the
# environment, the wheels carried in .whl (the GPU image has jax and torch, not the rest),
# the device's description in $OUT/device.txt, and a filter for warnings.
set -uo pipefail
export PYTHONUNBUFFERED=1 TF_CPP_MIN_LOG_LEVEL=3 XLA_PYTHON_CLIENT_PREALLOCATE=false
OUT=${OUT:-/tmp/gpu_out}
mkdir -p "$OUT"
python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site ${WHL_DIR:-.whl}/*.whl
export PYTHONPATH=/tmp/site:$PWD${PYTHONPATH:+:$PYTHONPATH}
{ nvidia-smi -L; python3 -c "import jax, torch; print('jax', jax.__version__, jax.devices(), 'torch', torch.__version__)"; git rev-parse --short HEAD 2>/dev/null; date -u; nproc; } | tee "$OUT/device.txt"
quiet() { grep -v Warning; }
