"""Load many GGUF files through lmsext in child processes and record how each one ended.

A batch child loads the files one after another (load → complete → respond → unload) and reports
``BEGIN i`` / ``END i ok|err …`` per file. When a batch child dies, the file it was on is loaded
again alone in a fresh child — so a crash is pinned on the file that caused it — and the rest of the
batch continues in a new child. Any death by a signal (SIGSEGV, SIGABRT, SIGFPE, SIGKILL after the
memory cap, …), a non-zero exit or a hang is a crash.
"""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

CHILD = r"""
import json, os, resource, sys, warnings
mem = int(os.environ.get("LMSEXT_FUZZ_MEM", str(4 << 30)))
resource.setrlimit(resource.RLIMIT_AS, (mem, mem))
resource.setrlimit(resource.RLIMIT_FSIZE, (50 << 20, 50 << 20))  # a flood of output kills the child (SIGXFSZ)
out = os.fdopen(os.dup(1), "w")  # the protocol; anything else written to fd 1 goes to stderr
os.dup2(2, 1)
import lmsext
from lmsext.errors import LmsextError
client = lmsext.Client()
paths = json.loads(sys.stdin.read())
for i, path in enumerate(paths):
    out.write(f"BEGIN {i}\n"); out.flush()
    try:
        llm = client.llm.load(path, config={"contextLength": 256})
        try:
            r = llm.complete("Once upon a time", config={"maxTokens": 4, "temperature": 0})
            r2 = llm.respond("Hello", config={"maxTokens": 3, "temperature": 0.7, "seed": 1})
            status = "loaded " + json.dumps([r.stats.stop_reason, r2.stats.stop_reason])
        finally:
            llm.unload()
    except LmsextError as exc:
        status = "err " + type(exc).__name__ + " " + json.dumps(str(exc))
    except Exception as exc:
        status = "exc " + type(exc).__name__ + " " + json.dumps(str(exc)[:300])
    out.write(f"END {i} {status}\n"); out.flush()
"""


@dataclass
class Outcome:
    """How loading one file ended."""

    path: str
    status: str  # "loaded", "err" (a clear lmsext error), "exc" (another exception), "crash", "hang"
    detail: str = ""

    @property
    def message(self) -> str:
        if self.status in ("err", "exc"):
            kind, _, msg = self.detail.partition(" ")
            try:
                return json.loads(msg)
            except ValueError:
                return msg
        return self.detail


@dataclass
class Run:
    outcomes: dict[str, Outcome] = field(default_factory=dict)
    children: int = 0
    seconds: float = 0.0


def _child(paths: list[str], timeout: float, env: dict[str, str]) -> tuple[list[tuple[int, str]], int | None, str,
                                                                            int | None]:
    """Run one child over ``paths``: (finished (index, status) list, index begun but not finished, stderr tail,
    return code — None when one file took longer than ``timeout`` seconds)."""
    with tempfile.TemporaryFile() as err_file:
        proc = subprocess.Popen([sys.executable, "-c", CHILD], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                stderr=err_file, env=env, text=True)
        proc.stdin.write(json.dumps(paths))
        proc.stdin.close()
        done: list[tuple[int, str]] = []
        begun: int | None = None
        lines: queue.Queue = queue.Queue()
        reader = threading.Thread(target=lambda: [lines.put(line) for line in proc.stdout] + [lines.put(None)],
                                  daemon=True)
        reader.start()
        rc: int | None = 0
        while True:
            try:
                line = lines.get(timeout=timeout)
            except queue.Empty:  # one file took too long: a hang
                proc.kill()
                proc.wait()
                rc = None
                break
            if line is None:
                rc = proc.wait()
                break
            if line.startswith("BEGIN "):
                begun = int(line.split()[1])
            elif line.startswith("END "):
                _, idx, status = line.rstrip("\n").split(" ", 2)
                done.append((int(idx), status[:2000]))
                begun = None
        err_file.seek(0, os.SEEK_END)
        size = err_file.tell()
        err_file.seek(max(0, size - 4000))
        err = err_file.read().decode("utf-8", "replace")
    return done, begun, err, rc


def _describe(rc: int | None, err: str) -> tuple[str, str]:
    if rc is None:
        return "hang", "no answer before the timeout"
    if rc < 0:
        name = signal.Signals(-rc).name
        return "crash", f"killed by {name}: {err.strip().splitlines()[-1] if err.strip() else ''}"
    return "crash", f"exit code {rc}: {err.strip().splitlines()[-1] if err.strip() else ''}"


def run_files(paths: list[str], *, batch: int = 60, per_file_timeout: float = 20.0, parallel: int = 2) -> Run:
    """Load every file of ``paths`` through lmsext in child processes; return how each ended."""
    env = dict(os.environ)
    env.setdefault("PYTHONPATH", str(Path(__file__).resolve().parents[1]))
    env["GGML_NO_BACKTRACE"] = "1"  # ggml would attach gdb to print a backtrace on abort: slow
    run = Run()
    t0 = time.perf_counter()
    pending = [paths[i:i + batch] for i in range(0, len(paths), batch)]

    def finish(chunk: list[str], result) -> list[str]:
        """Record a child's result; return the files still to load (after the one it died on)."""
        done, begun, err, rc = result
        run.children += 1
        for idx, status in done:
            kind, _, detail = status.partition(" ")
            run.outcomes[chunk[idx]] = Outcome(chunk[idx], kind, detail)
        if len(done) == len(chunk) and rc == 0:
            return []
        if begun is None:  # died before or between files: the next one is the suspect
            begun = len(done)
        if begun >= len(chunk):
            return []
        suspect = chunk[begun]
        # load the suspect alone in a fresh child, so the crash is really its own
        alone = _child([suspect], per_file_timeout, env)
        run.children += 1
        if alone[0]:
            kind, _, detail = alone[0][0][1].partition(" ")
            run.outcomes[suspect] = Outcome(suspect, kind, detail + " (alone; crashed in a batch)")
        else:
            kind, detail = _describe(alone[3], alone[2])
            run.outcomes[suspect] = Outcome(suspect, kind, detail)
        return chunk[begun + 1:]

    from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait

    with ThreadPoolExecutor(max_workers=parallel) as pool:
        futures: dict = {}
        while pending or futures:
            while pending and len(futures) < parallel:
                chunk = pending.pop(0)
                futures[pool.submit(_child, chunk, per_file_timeout, env)] = chunk
            finished, _ = wait(list(futures), return_when=FIRST_COMPLETED)
            for f in finished:
                rest = finish(futures.pop(f), f.result())
                if rest:
                    pending.insert(0, rest)
    run.seconds = time.perf_counter() - t0
    return run
