#!/usr/bin/env bash
# Set up everything lmsext needs on a fresh machine: a venv in .venv with the package and its test
# dependencies, and js/node_modules for the JS tests (when npm is there). Idempotent: a second run only checks. llama-cpp-python builds from source for the CPU
# (~4-8 min on 2 cores the first time; pip caches the wheel). For an NVIDIA GPU build instead:
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
# The widgets' JS unit tests (vitest + jsdom from js/package-lock.json). pip install never needs node:
# the front end ships as plain ES modules. Nothing here downloads a browser.
export PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1
if command -v npm >/dev/null 2>&1; then
  if [ ! -f js/node_modules/.package-lock.json ] || [ js/package-lock.json -nt js/node_modules/.package-lock.json ]; then
    (cd js && npm ci --no-audit --no-fund --loglevel=error)
  fi
fi
