#!/usr/bin/env bash
# Set up (if needed) and run the main job: load a model and stream a reply (see README).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export LMSEXT_MODELS_PATH="${LMSEXT_MODELS_PATH:-$(cd .. && pwd)/shared/models}"
exec .venv/bin/python -m lmsext.demo "$@"
