"""The benchmark suite runs (``python -m benchmarks --quick``) and reports every section: correctness only.

Benchmarks are not tests: nothing here checks a timing. It runs in a child process because the
suite drives its own IPython shell (a singleton the magics tests also create).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_quick_benchmark_runs_every_section(tmp_path):
    out = tmp_path / "latest.json"
    env = {**os.environ, "LMSEXT_CACHE_DIR": str(tmp_path / "cache")}  # stories260K: the embedded model
    proc = subprocess.run([sys.executable, "-m", "benchmarks", "--quick", "--out", str(out)], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = json.loads(out.read_text())
    sections = results["sections"]
    assert set(sections) == {"decode", "frontend", "ttft", "load", "multiturn", "memory"}
    greedy = sections["decode"]["models"]["stories260K"]["samplers"]["greedy"]
    for path in ("raw", "llama_cpp_python", "lmsext_api", "lmsext_magic"):
        assert greedy[path]["tok_s"] > 0 and greedy[path]["tokens"] == [64], path
    assert greedy["same_text_raw_vs_lmsext"]  # same tokens through the C API and through lmsext
    own = greedy["own_time"]  # llama_decode/sampling timed: the rest is each path's own time per token
    assert set(own) == {"raw", "lmsext_api", "lmsext_magic"}
    assert all(0 < o["own_us"] < o["native_us"] for o in own.values()), own
    assert "**Own time per token**" in proc.stdout
    assert sections["frontend"]["views"]["plain"]["simulated_rates"]
    chat = sections["multiturn"]["models"]["stories260K"]["turns"]
    assert chat["5"]["cached_tokens"] >= chat["5"]["prompt_tokens"] - chat["1"]["prompt_tokens"]  # prefix reused
    assert results["targets"] and all("met" in t for t in results["targets"])
    assert "**Decode throughput**" in proc.stdout and "**Targets**" in proc.stdout


def test_quick_contention_benchmark_reports_settings_conditions_and_verdicts(tmp_path):
    import time
    started = time.time()
    out = tmp_path / "contention.json"
    env = {**os.environ, "LMSEXT_MODELS_PATH": os.environ.get("LMSEXT_MODELS_PATH") or str(MODELS),
           "LMSEXT_CACHE_DIR": str(tmp_path / "cache")}
    proc = subprocess.run([sys.executable, "-m", "benchmarks.contention", "--quick", "--out", str(out)], cwd=REPO,
                          env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = json.loads(out.read_text())
    model = results["models"]["stories260K"]
    assert set(model["conditions"]) == {"quiet", "busy1"}
    for cond in model["conditions"].values():
        rows = cond["settings"]
        assert set(rows) == {"cpuThreads 1", *(f"cpuThreads {n}" for n in range(2, results["available_cpus"] + 1)),
                             "lmsext default", "llama-cpp-python default"}
        assert all(r["tok_s"] > 0 for r in rows.values())
        assert cond["best"].startswith("cpuThreads ") and cond["loadavg_start"] and cond["loadavg_end"]
        assert rows["lmsext default"]["threads"][0]["max"] == 1  # stories260K: one decode thread
    sampler = results["sampler"]
    assert sampler["same_tokens"] and set(sampler["chain"]) == {"full vocabulary", "top candidates"}
    # machine-readable verdicts: every target, its value and met (None in a quick run)
    targets = results["targets"]
    assert {t["target"] for t in targets} >= {"default decode ≥ 0.9× the best cpuThreads (1 busy process)",
                                              "default decode ≥ 0.95× the best cpuThreads (quiet)"}
    assert all("met" in t and "verdict" in t and t["value"] is not None for t in targets)
    assert "| lmsext default |" in proc.stdout and "**Targets**" in proc.stdout
    # the competing processes it started are gone
    assert not [c for c in _busy_loops(started)]


def _busy_loops(since: float) -> list[str]:
    """Command lines of the benchmark's busy-loop processes started after ``since``."""
    import psutil
    found = []
    for p in psutil.process_iter(["cmdline", "create_time"]):
        cmd = " ".join(p.info["cmdline"] or [])
        if "time.monotonic() + float(sys.argv[1])" in cmd and (p.info["create_time"] or 0) >= since:
            found.append(cmd)
    return found
