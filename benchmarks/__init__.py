"""lmsext's benchmark suite: lmsext vs llama-cpp-python vs a raw loop over llama.cpp's C API.

Run ``python -m benchmarks`` (or ``bash scripts/bench.sh``); see docs/performance.md. Modules:
``paths`` (the decode paths), ``sections`` (decode, front end, time to first token, load, multi-turn,
memory), ``report`` (targets, Markdown), ``common`` (models, machine, interleaving, display capture).
Benchmarks are not tests: ``tests/test_benchmarks.py`` only checks that a quick run completes.
"""
