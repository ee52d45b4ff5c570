#!/usr/bin/env bash
# Set up (if needed) and run the benchmark suite (docs/performance.md): prints the tables, writes
# benchmarks/results/latest.json and benchmarks/RESULTS.md. Arguments go to `python -m benchmarks`
# (--quick, --sections decode,ttft, --reps N, --no-synth, --docs: also write the tables into docs/performance.md). A few minutes on 2 cores.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
stamp=.venv/.lmsext-bench-installed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  .venv/bin/python -m pip install --quiet -e ".[bench]"
  touch "$stamp"
fi
exec .venv/bin/python -m benchmarks "$@"
