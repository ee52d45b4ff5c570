#!/usr/bin/env bash
# Set up (if needed) and run the main job (see README):
#   bash scripts/demo.sh              run notebooks/quickstart.ipynb headless: print its outputs, keep the
#                                     executed copy in build/notebooks/
#   bash scripts/demo.sh --lab        open the notebooks in JupyterLab instead (extra arguments go to jupyter lab)
#   bash scripts/demo.sh MODEL [...]  the terminal demo on any model: python -m lmsext.demo MODEL [--prompt ...]
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
case "${1:-}" in
  "")
    exec .venv/bin/python notebooks/run.py notebooks/quickstart.ipynb --out build/notebooks
    ;;
  --lab)
    shift
    if [ ! -x .venv/bin/jupyter-lab ]; then
      .venv/bin/python -m pip install --quiet "jupyterlab>=4.2,<5"
    fi
    exec .venv/bin/jupyter-lab notebooks/quickstart.ipynb "$@"
    ;;
  *)
    exec .venv/bin/python -m lmsext.demo "$@"
    ;;
esac
