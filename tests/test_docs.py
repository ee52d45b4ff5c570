"""The documentation site builds strictly (no broken link, no missing page, no docstring the
API reference cannot render), and its magics reference is written from the magics' own help."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_mkdocs_build_strict(tmp_path):
    env = dict(os.environ, NO_MKDOCS_2_WARNING="1")
    proc = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path)],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    magics = (tmp_path / "reference" / "magics" / "index.html").read_text()
    for name in ("%lm_load", "%%lm_respond", "%%lm_complete", "%lm_ps", "%lm_config", "--context-length",
                 "--temperature"):
        assert name in magics, name
    api = (tmp_path / "reference" / "api" / "index.html").read_text()
    for name in ("respond_stream", "LoadResult", "to_rest"):
        assert name in api, name


def test_readme_is_a_guide():
    readme = (ROOT / "README.md").read_text()
    assert len(readme.splitlines()) <= 250
    first_commands = [line for line in readme.splitlines() if line.startswith("bash scripts/")][:2]
    assert first_commands[0].startswith("bash scripts/demo.sh") and first_commands[1].startswith("bash scripts/test.sh")
