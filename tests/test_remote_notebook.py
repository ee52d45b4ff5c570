"""The quickstart notebook run headless against lmsext's own REST server started beside the kernel: a cell
``%lm_connect http://127.0.0.1:PORT`` right after ``%load_ext lmsext``, then the quickstart's cells unchanged."""

from __future__ import annotations

import os
from pathlib import Path

import nbclient
import nbformat
import pytest
from remote_servers import lmsext_server

from lmsext import synth

REPO = Path(__file__).resolve().parents[1]


def connected_quickstart(url: str) -> nbformat.NotebookNode:
    """The quickstart with its first cell split after ``%load_ext lmsext`` and ``%lm_connect url`` between."""
    nb = nbformat.read(REPO / "notebooks" / "quickstart.ipynb", as_version=4)
    for index, cell in enumerate(nb.cells):
        lines = cell.source.splitlines()
        if cell.cell_type == "code" and "%load_ext lmsext" in lines:
            cut = lines.index("%load_ext lmsext") + 1
            head, tail = "\n".join(lines[:cut]), "\n".join(lines[cut:])
            new = [nbformat.v4.new_code_cell(head), nbformat.v4.new_code_cell(f"%lm_connect {url}")]
            if tail.strip():
                new.append(nbformat.v4.new_code_cell(tail))
            nb.cells[index:index + 1] = new
            return nb
    raise AssertionError("the quickstart has no '%load_ext lmsext' line")


def text_of(cell: nbformat.NotebookNode) -> str:
    """Everything a code cell shows, as plain text."""
    out = []
    for o in cell.get("outputs", []):
        if o.output_type == "stream":
            out.append(o.text)
        elif o.output_type in ("display_data", "execute_result"):
            out.append(o.data.get("text/plain", ""))
        elif o.output_type == "error":
            out.append(f"{o.ename}: {o.evalue}")
    return "\n".join(out)


def test_the_quickstart_runs_unchanged_against_a_connected_server(tmp_path, monkeypatch):
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])))
    # the server serves the generated chat model the quickstart loads by path (the kernel finds it by file name)
    monkeypatch.setenv("LMSEXT_MODELS_PATH", str(synth.chatml_model().parent))
    with lmsext_server() as url:
        nb = connected_quickstart(url)
        client = nbclient.NotebookClient(nb, timeout=120, kernel_name="python3", allow_errors=True,
                                         resources={"metadata": {"path": str(REPO / "notebooks")}})
        client.execute()
    code = [c for c in nb.cells if c.cell_type == "code"]
    errors = [(c.source[:60], text_of(c)[-300:]) for c in code if any(o.output_type == "error" for o in c.outputs)]
    assert not errors, errors
    assert all(c.execution_count for c in code)  # every cell ran
    connect = next(c for c in code if c.source.startswith("%lm_connect"))
    assert "connected to" in text_of(connect) and url.split("//")[1] in text_of(connect)
    ps = text_of(code[-1])
    assert "stories260K" in ps and "storyteller" in ps  # the server holds the models the notebook loaded
    template = next(c for c in code if "apply_prompt_template" in c.source)
    assert "loaded in" in text_of(template) and "<|im_start|>user\nHi<|im_end|>" in text_of(template)
    panels = text_of(next(c for c in code if "LoadPanel" in c.source))
    assert "[widget]" in panels or "LoadPanel" in panels or "VBox" in panels, panels
    # stop strings end the text and are reported as on the in-kernel engine (the reference outputs recorded there)
    reference = {c.source: text_of(c) for c in nbformat.read(REPO / "notebooks" / "quickstart.ipynb", as_version=4).cells
                 if c.cell_type == "code"}
    stops = next(c for c in code if "done.stats.stop_reason" in c.source)
    assert text_of(stops) == reference[stops.source] and "stopStringFound '.'" in text_of(stops)
    story = next(c for c in code if c.source.startswith("# NBVAL_CHECK_OUTPUT\nprint(story.stats"))
    assert "tokens" in text_of(story)
