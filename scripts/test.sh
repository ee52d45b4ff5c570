#!/usr/bin/env bash
# Set up (if needed) and run the whole test suite on the real engine.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
# The widgets' JS unit tests (js/**/*.test.js, vitest + jsdom) first; pytest last, so its summary closes the run.
if command -v npm >/dev/null 2>&1; then
  (cd js && npm test --silent)
elif [ -n "${CI:-}" ]; then
  echo "npm not found: CI must run the JS tests in js/" >&2
  exit 1
else
  echo "npm not found: skipping the JS tests in js/" >&2
fi
# The import layers (pyproject's [tool.importlinter] contracts): a wrong import fails the run here.
.venv/bin/lint-imports --no-cache
# tests/ and notebooks/*.ipynb (pyproject's testpaths); the notebooks run under nbval in this venv's kernel,
# checking the deterministic cells' outputs after notebooks/nbval.cfg's replacements (timings, paths).
exec .venv/bin/python -m pytest -q --nbval-lax --nbval-current-env --nbval-sanitize-with notebooks/nbval.cfg "$@"
