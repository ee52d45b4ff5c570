#!/usr/bin/env bash
# Set up (if needed) and run the whole test suite on the real engine.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export LMSEXT_MODELS_PATH="${LMSEXT_MODELS_PATH:-$(cd .. && pwd)/shared/models}"
exec .venv/bin/python -m pytest -q "$@"
