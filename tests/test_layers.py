"""The package's import layers: the import-linter contracts in pyproject.toml hold, and the modules above
the engine (rendering, the public API's modules, the session) import without loading llama.cpp."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_import_contracts_hold():
    """`lint-imports` (scripts/test.sh runs it too) finds every contract kept: config < engine interface <
    engine | render < public API < front ends, llama_cpp imported only by lmsext.engine."""
    lint = Path(sys.executable).with_name("lint-imports")
    run = subprocess.run([str(lint), "--no-cache"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-2000:]
    assert "0 broken" in run.stdout and "6 kept" in run.stdout, run.stdout[-2000:]


def test_render_and_public_api_modules_import_without_llama_cpp():
    """Importing the rendering, the results, Client/LLM's modules and the session loads no llama.cpp: the
    engine comes in when a Client builds its default LocalEngine, and only then."""
    code = ("import sys\n"
            "import lmsext.render, lmsext.results, lmsext.client, lmsext.llm, lmsext.session, lmsext.backend\n"
            "assert 'llama_cpp' not in sys.modules, 'llama_cpp loaded by an import'\n"
            "assert not any(m.startswith('lmsext.engine') for m in sys.modules), "
            "sorted(m for m in sys.modules if m.startswith('lmsext.engine'))\n"
            "import lmsext\n"
            "lmsext.Client('http://127.0.0.1:9')\n"  # a remote engine loads no llama.cpp either
            "assert 'llama_cpp' not in sys.modules and 'lmsext.remote' in sys.modules\n"
            "lmsext.Client()\n"
            "assert 'llama_cpp' in sys.modules and 'lmsext.engine.local' in sys.modules\n"
            "print('ok')\n")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    run = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120, env=env)
    assert run.returncode == 0 and run.stdout.strip() == "ok", run.stderr[-3000:]



def test_no_import_circle_in_the_package():
    """No two modules of lmsext import each other, directly or through others (runtime imports, function-level
    ones included; type-only imports do not count): the import graph's strongly connected parts are single."""
    import grimp

    graph = grimp.build_graph("lmsext", exclude_type_checking_imports=True)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    circles: list[list[str]] = []

    def visit(module: str) -> None:  # Tarjan's strongly connected components
        index[module] = low[module] = len(index)
        stack.append(module)
        for imported in graph.find_modules_directly_imported_by(module):
            if imported not in index:
                visit(imported)
                low[module] = min(low[module], low[imported])
            elif imported in stack:
                low[module] = min(low[module], index[imported])
        if low[module] == index[module]:
            part = []
            while True:
                member = stack.pop()
                part.append(member)
                if member == module:
                    break
            if len(part) > 1:
                circles.append(sorted(part))

    for module in sorted(graph.modules):
        if module not in index:
            visit(module)
    assert circles == []
