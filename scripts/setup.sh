#!/usr/bin/env bash
# Set up everything lmsext needs on a fresh machine: a venv in .venv with the package and its test
# dependencies. Idempotent: a second run only checks. llama-cpp-python builds from source for the CPU
# (~8-18 min on 2 cores the first time; pip caches the wheel). For an NVIDIA GPU build instead:
#   CMAKE_ARGS="-DGGML_CUDA=on" .venv/bin/pip install --force-reinstall --no-cache-dir llama-cpp-python
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
stamp=.venv/.lmsext-installed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  .venv/bin/python -m pip install --quiet --upgrade pip
  .venv/bin/python -m pip install --quiet -e ".[test]"
  touch "$stamp"
fi
