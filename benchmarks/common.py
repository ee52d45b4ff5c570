"""Shared helpers: models, machine description, interleaved repetitions, medians, display capture."""

from __future__ import annotations

import datetime
import gc
import json
import os
import platform
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

HERE = Path(__file__).resolve().parent
RESULTS_DIR = HERE / "results"

#: LM Studio's prediction defaults with a fixed seed, and greedy decoding with the penalty off.
SAMPLERS: dict[str, dict[str, Any]] = {
    "greedy": {"temperature": 0.0, "repeatPenalty": False},
    "lmstudio": {"temperature": 0.8, "topKSampling": 40, "topPSampling": 0.95, "minPSampling": 0.05,
                 "repeatPenalty": 1.1, "seed": 42},
}
SAMPLER_LABELS = {
    "greedy": "greedy, repeat penalty off",
    "lmstudio": "LM Studio defaults (T 0.8, top-k 40, top-p 0.95, min-p 0.05, repeat 1.1/64), seed 42",
}


def llama_cpp_sampling(name: str) -> dict[str, Any]:
    """The same sampler settings as keyword arguments of llama-cpp-python's ``create_completion``."""
    if name == "greedy":
        return {"temperature": 0.0, "repeat_penalty": 1.0}
    return {"temperature": 0.8, "top_k": 40, "top_p": 0.95, "min_p": 0.05, "repeat_penalty": 1.1, "seed": 42}


def stories_path() -> Path:
    """stories260K.gguf: from ``$LMSEXT_MODELS_PATH`` when a folder there has it, else the embedded default model."""
    from lmsext.synth import find_stories

    found = find_stories()
    if found is None:  # pragma: no cover - a broken installation
        raise SystemExit("stories260K.gguf not found in LMSEXT_MODELS_PATH nor inside the lmsext package")
    return found


def cache_dir() -> Path:
    """Where generated benchmark models go: ``$LMSEXT_CACHE_DIR`` or ``benchmarks/.cache`` (gitignored)."""
    env = os.environ.get("LMSEXT_CACHE_DIR")
    return Path(env).expanduser() if env else HERE / ".cache"


def compute_bound_model(n_params: int, dtype: str) -> Path:
    """A random-weights llama GGUF of about ``n_params`` parameters (generated once, then cached)."""
    from lmsext.synth import random_model

    folder = cache_dir()
    folder.mkdir(parents=True, exist_ok=True)
    return random_model(folder, n_params_target=n_params, dtype=dtype)


#: One layer of a 1B-class model (Llama-3.2-1B's widths: n_embd 2048, n_ff 8192, 32 query / 8 KV heads).
#: How much a cached token costs a new one (attention) against the weights is a per-layer ratio
#: (~ n_cache / 6·n_embd), so two such layers show a 1B model's multi-turn behaviour at 1/8 the cost.
WIDE_SHAPE = {"n_layer": 2, "n_embd": 2048, "n_head": 32, "n_head_kv": 8, "n_ff": 8192}


def wide_model(dtype: str = "q8_0") -> Path:
    """A random-weights model with :data:`WIDE_SHAPE` (~125M parameters; generated once, then cached)."""
    from lmsext.synth import random_model

    folder = cache_dir()
    folder.mkdir(parents=True, exist_ok=True)
    return random_model(folder, dtype=dtype, shape=WIDE_SHAPE)


#: A ~250M-parameter model with a real model's vocabulary (Qwen2.5's 151,936 tokens; Gemma-3-270M-like
#: widths: n_embd 640, GQA 10/2 heads): the output layer over the vocabulary is ~40 % of a token's work,
#: and the sampler chain runs over 151,936 candidates, as on the third-party models people use.
LARGE_VOCAB_SHAPE = {"n_layer": 11, "n_embd": 640, "n_head": 10, "n_head_kv": 2, "n_ff": 2048}
LARGE_VOCAB = 151_936


def large_vocab_model(dtype: str = "q8_0") -> Path:
    """A random-weights model with :data:`LARGE_VOCAB_SHAPE` and :data:`LARGE_VOCAB` tokens
    (~249M parameters, ~265 MB at Q8_0; generated once, then cached)."""
    from lmsext.synth import random_model

    folder = cache_dir()
    folder.mkdir(parents=True, exist_ok=True)
    return random_model(folder, dtype=dtype, shape=LARGE_VOCAB_SHAPE, n_vocab=LARGE_VOCAB)


def machine() -> dict[str, Any]:
    """What the numbers were measured on (they are only comparable within one run)."""
    import llama_cpp

    cpu = platform.processor() or ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        load = os.getloadavg()
    except OSError:
        load = None
    return {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "host": platform.node(), "cpu": cpu, "cores": os.cpu_count(),
        "platform": platform.platform(), "python": platform.python_version(),
        "llama_cpp_python": getattr(llama_cpp, "__version__", "?"),
        "loadavg_start": [round(x, 2) for x in load] if load else None,
    }


def write_between_markers(doc: Path, start: str, end: str, text: str) -> bool:
    """Replace what is between the ``start`` and ``end`` markers of ``doc`` with ``text``; False (and
    ``doc`` untouched) if it lacks them."""
    content = doc.read_text()
    if start not in content or end not in content:
        return False
    head, rest = content.split(start, 1)
    _, tail = rest.split(end, 1)
    doc.write_text(head + start + "\n" + text + "\n" + end + tail)
    return True


def median(values: Sequence[float]) -> float | None:
    vals = [v for v in values if v is not None]
    return statistics.median(vals) if vals else None


def ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None


def interleave(paths: dict[str, Callable[[], Any]], reps: int, *, warmup: int = 1,
               rotate: bool = True) -> dict[str, list[Any]]:
    """Run every path ``warmup`` times, then ``reps`` rounds of all paths (A B C, B C A, C A B, …).

    Rotating the order cancels position effects (a path that always runs after the slow one), and
    interleaving spreads the machine's load changes over every path alike. Returns each path's
    results in run order.
    """
    names = list(paths)
    for _ in range(warmup):
        for name in names:
            paths[name]()
    out: dict[str, list[Any]] = {name: [] for name in names}
    for rep in range(reps):
        k = rep % len(names) if rotate else 0
        for name in names[k:] + names[:k]:
            gc.collect()
            out[name].append(paths[name]())
    return out


def rss_bytes() -> int:
    """Resident set size of this process."""
    try:
        import psutil

        return int(psutil.Process().memory_info().rss)
    except ImportError:  # Linux without psutil
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


@dataclass
class Captured:
    """One message the kernel would send to the front end."""

    kind: str  # display_data | update_display_data | comm_msg
    nbytes: int
    t: float
    content: dict[str, Any] = field(repr=False, default_factory=dict)


class FrontEndCapture:
    """Records what goes to the front end: display messages (as the kernel's ZMQ publisher would send
    them) and comm messages (widgets), with their JSON size and time.

    ``install(shell)`` swaps the shell's display publisher; comm messages are recorded by wrapping
    ``comm.create_comm`` so any widget created while installed reports its ``send``/state messages.
    """

    def __init__(self) -> None:
        self.messages: list[Captured] = []
        self._restore: list[Callable[[], None]] = []
        #: timestamps messages; the front-end section swaps in a simulated clock
        self.clock: Callable[[], float] = time.perf_counter

    def clear(self) -> None:
        self.messages.clear()

    def record(self, kind: str, content: dict[str, Any]) -> None:
        data = json.dumps(content, default=str, ensure_ascii=False).encode("utf-8")
        self.messages.append(Captured(kind, len(data), self.clock(), content))

    def install(self, shell: Any) -> "FrontEndCapture":
        from IPython.core.displaypub import DisplayPublisher

        capture = self

        class _Publisher(DisplayPublisher):
            def publish(self, data, metadata=None, source=None, *, transient=None, update=False, **kwargs):
                capture.record("update_display_data" if update else "display_data",
                               {"data": data, "metadata": metadata or {}, "transient": transient or {}})

            def clear_output(self, wait=False):
                capture.record("clear_output", {"wait": wait})

        old = shell.display_pub
        shell.display_pub = _Publisher(shell=shell)
        self._restore.append(lambda: setattr(shell, "display_pub", old))
        self._install_comm()
        return self

    def _install_comm(self) -> None:
        try:
            import comm
        except ImportError:
            return
        capture = self
        original = comm.create_comm

        def create_comm(*args, **kwargs):
            c = original(*args, **kwargs)
            publish = getattr(c, "publish_msg", None)
            if publish is not None:
                def publish_msg(msg_type, data=None, metadata=None, buffers=None, **keys):
                    nbuf = sum(len(memoryview(b).cast("B")) for b in (buffers or []))
                    capture.record(msg_type, {"data": data or {}, "metadata": metadata or {}, "buffers": nbuf})
                    return publish(msg_type, data=data, metadata=metadata, buffers=buffers, **keys)
                c.publish_msg = publish_msg
            return c

        comm.create_comm = create_comm
        self._restore.append(lambda: setattr(comm, "create_comm", original))

    def uninstall(self) -> None:
        while self._restore:
            self._restore.pop()()


def summary_stats(values: Sequence[float]) -> dict[str, float | None]:
    vals = sorted(v for v in values if v is not None)
    if not vals:
        return {"median": None, "min": None, "max": None, "n": 0}
    return {"median": statistics.median(vals), "min": vals[0], "max": vals[-1], "n": len(vals)}
