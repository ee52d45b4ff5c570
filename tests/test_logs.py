"""llama.cpp/ggml output goes through Python logging at the right levels; ``%lm_load --verbose`` shows
it; otherwise nothing reaches the cell or the terminal (checked at the file-descriptor level, in a
child process, over loads, predictions, a failing load and a grammar check)."""

from __future__ import annotations

import logging
import subprocess
import sys
from pathlib import Path

from lmsext.config import LoadModelConfig
from lmsext.engine import EngineModel, logs
from lmsext.errors import ModelLoadError

sys.path.insert(0, str(Path(__file__).resolve().parent))
from gguf_mutations import rewrite  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


def test_levels_are_mapped_and_errors_logged_as_errors(stories_path, tmp_path):
    with logs.capture_logs() as records:
        engine, _ = EngineModel.load(stories_path, LoadModelConfig.parse({"contextLength": 256}))
    engine.close()
    by_level = {level: [r.getMessage() for r in records if r.levelno == level]
                for level in (logging.DEBUG, logging.INFO, logging.WARNING, logging.ERROR)}
    assert any("llama_model_loader: loaded meta data" in m for m in by_level[logging.INFO])
    assert any("bad special token" in m for m in by_level[logging.WARNING])  # ggml WARN → WARNING
    assert by_level[logging.DEBUG] and not by_level[logging.ERROR]
    assert all(r.name == "lmsext.llama_cpp" for r in records)
    bad = rewrite(stories_path, tmp_path / "notanarch.gguf", kv={"general.architecture": "notanarch"})
    with logs.capture_logs() as records:
        try:
            EngineModel.load(bad)
        except ModelLoadError:
            pass
    errors = [r.getMessage() for r in records if r.levelno == logging.ERROR]
    assert any("unknown model architecture: 'notanarch'" in m for m in errors)  # ggml ERROR → ERROR


def test_lm_load_verbose_shows_llama_cpp_log(unload_all, shell):
    from IPython.utils.capture import capture_output
    ip = shell
    ip.run_line_magic("load_ext", "lmsext")
    with capture_output() as cap:
        ip.run_line_magic("lm_load", "stories260K --new --context-length 256 --verbose")
    texts = [o.data.get("text/plain", "") for o in cap.outputs]
    log = next(t for t in texts if "llama_model_loader" in t)
    assert "INFO" in log and "WARNING" in log and "bad special token" in log
    assert cap.stdout == "" and cap.stderr == ""
    with capture_output() as cap:
        ip.run_line_magic("lm_load", "stories260K --new --context-length 256")
    assert not any("llama_model_loader" in o.data.get("text/plain", "") for o in cap.outputs)


CHILD = r"""
import lmsext
from lmsext.errors import LmsextError
client = lmsext.Client()
m = client.llm.load("stories260K", config={"contextLength": 256})
m.complete("Once upon a time", config={"maxTokens": 8})
m.respond("Hi", config={"maxTokens": 4, "structured": {"type": "json"}})
try:
    client.llm.load(__import__("sys").argv[1])
except LmsextError:
    pass
m.unload()
"""


def test_nothing_reaches_stdout_or_stderr(stories_path, tmp_path):
    bad = rewrite(stories_path, tmp_path / "notanarch.gguf", kv={"general.architecture": "notanarch"})
    proc = subprocess.run([sys.executable, "-c", CHILD, str(bad)], capture_output=True, text=True, timeout=120,
                          cwd=REPO)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "" and proc.stderr == ""
