"""The benchmark suite runs (``python -m benchmarks --quick``) and reports every section; the verdicts
of the last full run (the Targets tables the benchmarks write into ``benchmarks/RESULTS.md`` and
``docs/performance.md``) hold no missed target beyond the named, explained ones.

Nothing here times anything itself: the quick run is a smoke run (its verdicts are "not judged"),
and the targets are judged on the recorded full runs, which the benchmarks write machine-readably.
The runs happen in a child process because the suite drives its own IPython shell (a singleton the
magics tests also create).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
MODELS = REPO / "lmsext" / "models"

#: Targets the last full runs missed, each with why; a target missed and not listed here fails
#: :func:`test_recorded_runs_miss_no_target_beyond_the_known_ones`, and so does one listed here that is
#: now met (then take it off the list).
KNOWN_MISSES = {
    "multi-turn stories260K: TTFT turn 20 / turn 1: ≤ 1.5×":
        "the raw C-API loop doing the same prompt work misses it too (5.28×): turn 20's new tokens cost more "
        "than turn 1's whole prompt on a 260K model",
    "multi-turn synth60M-f16: TTFT turn 20 / turn 1: ≤ 1.5×":
        "the raw loop doing the same work is at 1.54×: the prompt's growth, not lmsext",
    "default decode ≥ 0.95× the best cpuThreads (quiet) [stories260K]":
        "one decode thread is best on a 260K model; the default's batch threads cost more than they bring",
}


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


def _recorded_verdicts(path: Path) -> dict[str, str]:
    """target → verdict from every **Targets** table in ``path`` (the verdict is the last column)."""
    verdicts: dict[str, str] = {}
    in_table = False
    header: list[str] = []
    for line in path.read_text().splitlines():
        if line.strip() == "**Targets**":
            in_table, header = True, []
            continue
        if not in_table:
            continue
        if not line.startswith("|"):
            in_table = in_table and not header  # the blank line before the table
            continue
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if not header:
            header = cells
        elif not set(line) <= set("|-: "):
            row = dict(zip(header, cells))
            name = cells[0] if "model" not in row else f"{cells[0]} [{row['model']}]"
            verdicts[name] = cells[-1].lower()
    return verdicts


def test_recorded_runs_miss_no_target_beyond_the_known_ones():
    verdicts = {**_recorded_verdicts(REPO / "benchmarks" / "RESULTS.md"),
                **_recorded_verdicts(REPO / "docs" / "performance.md")}
    assert len(verdicts) > 40 and {"met", "missed"} <= set(verdicts.values())  # the tables were read
    assert set(verdicts.values()) <= {"met", "missed", "not judged"}, set(verdicts.values())
    missed = {name for name, v in verdicts.items() if v == "missed"}
    assert missed - KNOWN_MISSES.keys() == set(), "targets missed by the last full run"
    assert KNOWN_MISSES.keys() - missed == set(), "known misses that are met now (or renamed): update KNOWN_MISSES"


def test_the_verdicts_say_missed_when_a_value_misses_its_target():
    from benchmarks import contention, report

    results = {"sections": {"multiturn": {"models": {"m": {"last_over_first": 2.0, "last_turn": 20}}},
                            "load": {"models": {"m": {"jit_hit_api": {"median": 0.5e-3}}}}}}
    by_name = {t["name"]: t["met"] for t in report.targets(results)}
    assert by_name["multi-turn m: TTFT turn 20 / turn 1"] is False
    assert by_name["load m: JIT hit client.llm.model()"] is True
    name, cond, what, thr = contention.TARGETS[0]
    setting = {"x_best": thr / 2, "x_llama": thr / 2, "tok_s": 1.0}
    cres = {"models": {"m": {"conditions": {cond: {"rounds_x_best": [thr / 2] * 4, "rounds_x_llama": [thr / 2] * 4,
                                                   "settings": {contention.DEFAULT: setting}}}}}}
    judged = {t["target"]: t for t in contention.targets(cres)}
    assert judged[name]["met"] is False and judged[name]["verdict"] == "missed"


def test_quick_remote_benchmark_decodes_through_both_clients_and_counts_messages(tmp_path):
    out = tmp_path / "remote.json"
    env = {**os.environ, "LMSEXT_CACHE_DIR": str(tmp_path / "cache")}
    proc = subprocess.run([sys.executable, "-m", "benchmarks.remote", "--quick", "--out", str(out)], cwd=REPO,
                          env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = json.loads(out.read_text())
    assert "lmsext server" in results["server"]
    decode = results["decode"]
    for name in ("lmsext", "openai"):  # both clients decoded the full token count every round
        assert decode["clients"][name]["tok_s"] > 0 and decode["clients"][name]["tokens"] == [32, 32]
    assert len(decode["round_ratios"]) == 2 and decode["ratio_median"] > 0
    frontend = results["frontend"]
    assert frontend["tokens"] == 64 and frontend["messages"] >= 1 and "stream" in frontend["kinds"]
    assert [t["met"] for t in results["targets"]] == [None, None]  # quick: not judged
    assert "× openai" in proc.stdout and "front-end messages" in proc.stdout


def test_quick_speculative_benchmark_measures_every_case(tmp_path):
    out = tmp_path / "speculative.json"
    proc = subprocess.run([sys.executable, "-m", "benchmarks.speculative", "--quick", "--out", str(out)], cwd=REPO,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = json.loads(out.read_text())
    cases = {c["name"]: c for c in results["cases"]}
    assert len(cases) == 6 and all(c["plain_tok_s"] > 0 and c["speculative_tok_s"] > 0 for c in cases.values())
    assert all(c["same_text"] for c in cases.values())  # greedy: speculation changes no token
    assert cases["identity pair"]["acceptance"] == 1.0
    assert cases["batch of 3, identity pair"]["acceptance"] == 1.0  # the drafting sequences batched (parallel)
    assert [t["met"] for t in results["targets"]] == [None] * 4  # quick: not judged
    assert "× plain" in proc.stdout and "accepted / drafted" in proc.stdout
