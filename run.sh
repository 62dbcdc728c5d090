#!/usr/bin/env bash
# One entry point for a fresh machine: creates .venv (Python 3.11+) on first use,
# installs the pinned requirements and krd_jax, then runs what you ask.
#   bash run.sh demo            # the main job: teacher + students on digits_lt
#   bash run.sh test            # the test suite
#   bash run.sh <anything else> # runs `python -m krd_jax <args>` (teacher, student, ...)
set -euo pipefail
cd "$(dirname "$0")"
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -c 'import sys; assert sys.version_info >= (3, 11), "krd_jax needs Python 3.11+"'
  "$PY" -m venv .venv
fi
stamp=.venv/.installed-$(cat requirements.txt requirements-test.txt setup.cfg | sha256sum | cut -c1-16)
if [ ! -e "$stamp" ]; then
  .venv/bin/python -m pip install -q --upgrade pip
  .venv/bin/python -m pip install -q -r requirements-test.txt
  .venv/bin/python -m pip install -q --no-deps -e .
  touch "$stamp"
fi
export TF_CPP_MIN_LOG_LEVEL=3
case "${1:-demo}" in
  test) shift; exec .venv/bin/python -m pytest -q -n 2 "$@" ;;
  *)    exec .venv/bin/python -m krd_jax "$@" ;;
esac
