"""A loaded llama.cpp model + context, guarded so misuse raises instead of crashing the kernel.

Lifetime rule of the native handles (model, context, vocab and everything made from them: samplers,
grammars, token pieces). **No C call ever runs on a freed model or context.** Every piece of code that
calls llama.cpp with one of this instance's handles is a *user* of the instance for the whole time it
calls: it enters with :meth:`EngineModel.use` (a short call: tokenize, detokenize, a token's bytes) or
:meth:`EngineModel.acquire_prediction` (a prediction or a distribution: it also takes :attr:`lock`,
which serialises work on the context, and holds the instance until :meth:`EngineModel.release`).
Entering fails with :class:`ModelNotLoadedError` once the instance is closing. :meth:`close` marks
the instance closing at once (new users are refused, a running prediction is asked to stop), waits
up to ``wait`` seconds for the users to leave, and the **last user to leave frees** the handles — at
once when there is none, otherwise when a long tokenize ends or a suspended stream finishes. One
counter under one condition variable (:attr:`EngineModel._life`) is the only mechanism; the raw
pointers (:attr:`ctx`, :attr:`vocab`) are only valid inside such a use. Samplers and grammars
(``sampling.SamplerChain``) are created and freed inside the prediction that uses them.
"""

from __future__ import annotations

import ctypes
import re
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import llama_cpp

from ..backend import ProgressCallback
from ..config import LoadModelConfig
from ..models import is_embedded_file
from ..errors import ModelLoadError, ModelNotLoadedError
from . import _lib, logs
from .gguf_info import ModelInfo, read_model_info
from .params import LoadPlan, plan_load
from .placement import apply_measured
from .sigint import SigintGuard
from ..chat_templates import ChatTemplate



@dataclass(frozen=True)
class LoadReport:
    """What the engine measured while loading: time, memory, the plan it applied."""

    plan: LoadPlan
    load_time_seconds: float
    weights_bytes: int
    kv_cache_bytes: int
    n_ctx: int
    n_batch: int
    n_ubatch: int
    log_lines: tuple[str, ...]


def _kv_overrides_array(overrides: dict[str, Any]):
    if not overrides:
        return None
    arr = (llama_cpp.llama_model_kv_override * (len(overrides) + 1))()
    for i, (key, value) in enumerate(overrides.items()):
        arr[i].key = key.encode("utf-8")
        if isinstance(value, bool):
            arr[i].tag = llama_cpp.LLAMA_KV_OVERRIDE_TYPE_BOOL
            arr[i].value.val_bool = value
        elif isinstance(value, int):
            arr[i].tag = llama_cpp.LLAMA_KV_OVERRIDE_TYPE_INT
            arr[i].value.val_i64 = value
        elif isinstance(value, float):
            arr[i].tag = llama_cpp.LLAMA_KV_OVERRIDE_TYPE_FLOAT
            arr[i].value.val_f64 = value
        else:
            arr[i].tag = llama_cpp.LLAMA_KV_OVERRIDE_TYPE_STR
            arr[i].value.val_str = str(value).encode("utf-8")[:127]
    arr[len(overrides)].key = b"\0"  # llama.cpp stops at an empty key
    return arr


def _last_error(lines: list[str]) -> str:
    for line in reversed(lines):  # llama.cpp's own reason: "llama_model_load: error loading model: <why>"
        if "error loading model:" in line:
            why = line.rsplit("error loading model:", 1)[1].strip()
            arch = re.search(r"unknown model architecture: '([^']*)'", why)
            if arch:
                return f"unsupported model architecture '{arch.group(1)}' (this llama.cpp build cannot run it)"
            return why
    for line in reversed(lines):
        low = line.lower()
        if "error" in low or "failed" in low or "unknown" in low or "invalid" in low:
            return line.strip()
    return lines[-1].strip() if lines else "no details from llama.cpp"


class EngineModel:
    """One loaded model instance: the llama.cpp model and its context.

    Every public method checks the instance is still loaded first: using a closed model raises
    :class:`ModelNotLoadedError` (llama.cpp would segfault). ``lock`` serialises predictions; the
    module docstring gives the lifetime rule every C call follows.
    """

    def __init__(self, path: Path, info: ModelInfo, plan: LoadPlan, model_ptr, ctx_ptr) -> None:
        self.path = path
        self.info = info
        self.plan = plan
        self._model = model_ptr
        self._ctx = ctx_ptr
        self._vocab = llama_cpp.llama_model_get_vocab(model_ptr)
        self.n_vocab = int(llama_cpp.llama_vocab_n_tokens(self._vocab))
        self.n_ctx = int(llama_cpp.llama_n_ctx(ctx_ptr))
        self.n_batch = int(llama_cpp.llama_n_batch(ctx_ptr))
        self.lock = threading.Lock()
        self.stop_requested = threading.Event()
        self._closing = False
        #: The file is the embedded default model (its stories end with BOS: see ``LLM``'s story end).
        self.is_embedded_model = is_embedded_file(path, info.file_size)
        #: how many callers are inside a C call with these handles (see the module docstring)
        self._users = 0
        self._life = threading.Condition()
        self._prediction_thread: int | None = None  # the thread of the running prediction, if any
        #: tokens whose K/V are in the cache, in order (for prefix reuse across calls)
        self.cached_tokens: list[int] = []
        #: picks each decode step's thread count, learning across predictions (see generate.thread_plan)
        self.decode_threads: Any = None
        self.add_bos = bool(llama_cpp.llama_vocab_get_add_bos(self._vocab))
        #: piece buffer of the holder of :attr:`lock` (the token loop); other callers bring their own
        self._piece_buf = ctypes.create_string_buffer(256)
        #: token → bytes, per ``special`` flag (a vocabulary's pieces never change): detokenizing a
        #: 1,500-token chat prompt costs ~0.1 ms instead of ~1.7 ms of llama_token_to_piece calls
        self._pieces: tuple[dict[int, bytes], dict[int, bytes]] = ({}, {})
        self.chat_template = ChatTemplate(info.chat_template, bos_token=self._special_text(
            llama_cpp.llama_vocab_bos(self._vocab)), eos_token=self._special_text(
            llama_cpp.llama_vocab_eos(self._vocab)))

    # -- loading -------------------------------------------------------------------------------

    @classmethod
    # ~80 lines: the steps of one load must share the guard, the progress wrapper and the cleanup on failure
    def load(cls, path: str | Path, config: LoadModelConfig | None = None, *,
             info: ModelInfo | None = None, progress: ProgressCallback | None = None
             ) -> tuple["EngineModel", LoadReport]:
        """Load ``path`` with ``config``; raise ConfigError/ModelLoadError before anything breaks."""
        _lib.init()
        path = Path(path)
        info = info or read_model_info(path)
        plan = plan_load(config or LoadModelConfig(), info)
        mparams = llama_cpp.llama_model_default_params()
        for key, value in plan.model_params.items():
            if key == "tensor_split":
                split = (ctypes.c_float * len(value))(*value)
                mparams.tensor_split = split
            else:
                setattr(mparams, key, value)
        overrides = _kv_overrides_array(plan.kv_overrides)
        if overrides is not None:
            mparams.kv_overrides = overrides
        keepalive: list[Any] = [overrides]
        # Ctrl-C during the load: a KeyboardInterrupt raised inside llama.cpp's log or progress callback
        # would be swallowed by ctypes (the load went on). The guard turns SIGINT into a flag, the progress
        # callback returns False on it (llama.cpp then abandons the load) and we raise afterwards.
        interrupted = threading.Event()

        @llama_cpp.llama_progress_callback
        def _progress(fraction: float, _user: ctypes.c_void_p) -> bool:
            if interrupted.is_set():
                return False
            if progress is not None:
                try:
                    if progress(float(fraction)) is False:
                        return False
                except KeyboardInterrupt:  # a Ctrl-C the guard could not catch (not the main thread)
                    interrupted.set()
                except Exception:
                    pass
            return not interrupted.is_set()
        mparams.progress_callback = _progress
        keepalive.append(_progress)
        guard = SigintGuard(interrupted)
        t0 = time.perf_counter()
        try:
            with guard, logs.capture_logs() as records:
                model_ptr = llama_cpp.llama_model_load_from_file(str(path).encode("utf-8"), mparams)
                if not model_ptr:
                    if interrupted.is_set():
                        raise KeyboardInterrupt(f"the load of {path.name} was interrupted: nothing was loaded")
                    lines = [r.getMessage() for r in records]
                    raise ModelLoadError(f"llama.cpp could not load {path.name}: {_last_error(lines)}")
                cparams = llama_cpp.llama_context_default_params()
                for key, value in plan.context_params.items():
                    setattr(cparams, key, value)
                cparams.no_perf = True
                ctx_ptr = llama_cpp.llama_init_from_model(model_ptr, cparams) if not interrupted.is_set() else None
                if not ctx_ptr or interrupted.is_set():
                    if ctx_ptr:
                        llama_cpp.llama_free(ctx_ptr)
                    llama_cpp.llama_model_free(model_ptr)
                    _lib.release_memory()
                    if interrupted.is_set():
                        raise KeyboardInterrupt(f"the load of {path.name} was interrupted: nothing was loaded")
                    lines = [r.getMessage() for r in records]
                    raise ModelLoadError(f"llama.cpp could not create a context for {path.name}: {_last_error(lines)}")
        finally:
            guard.close()
        load_time = time.perf_counter() - t0
        del keepalive
        engine = cls(path, info, plan, model_ptr, ctx_ptr)
        if engine.n_ctx != plan.effective["context_length"]:
            plan.notes.append(f"context_length → {engine.n_ctx}: what llama.cpp allocated")
            plan.effective["context_length"] = engine.n_ctx
        log_lines = tuple(r.getMessage() for r in records)
        apply_measured(plan, log_lines)  # the GPU figures: what llama.cpp placed, not what was planned
        report = LoadReport(
            plan=plan, load_time_seconds=load_time,
            weights_bytes=int(llama_cpp.llama_model_size(model_ptr)),
            kv_cache_bytes=plan.kv_cache_bytes(), n_ctx=engine.n_ctx, n_batch=engine.n_batch,
            n_ubatch=int(llama_cpp.llama_n_ubatch(ctx_ptr)),
            log_lines=log_lines)
        return engine, report

    # -- lifetime ------------------------------------------------------------------------------

    @property
    def closed(self) -> bool:
        """True once :meth:`close` was called; every other method then raises ModelNotLoadedError."""
        return self._model is None or self._closing

    def check_open(self) -> None:
        """Raise :class:`ModelNotLoadedError` if this instance was unloaded."""
        if self._model is None or self._closing:
            raise ModelNotLoadedError(f"model {self.path.name} was unloaded; load it again to use it")

    @property
    def ctx(self):
        """The raw ``llama_context`` pointer (checked; valid only inside a use, see the module docstring)."""
        self.check_open()
        return self._ctx

    @property
    def vocab(self):
        """The raw ``llama_vocab`` pointer (checked; valid only inside a use, see the module docstring)."""
        self.check_open()
        return self._vocab

    @contextmanager
    def use(self) -> Iterator[None]:
        """Be a user of the native handles for the ``with`` block (raises ModelNotLoadedError if closing)."""
        self._enter()
        try:
            yield
        finally:
            self._leave()

    def _enter(self) -> None:
        with self._life:
            self.check_open()
            self._users += 1

    def _leave(self) -> None:
        with self._life:
            self._users -= 1
            if self._users == 0:
                if self._closing:
                    self._free()
                self._life.notify_all()

    def acquire_prediction(self) -> None:
        """Take :attr:`lock` (or raise ModelBusyError at once) and become a user until :meth:`release`.

        The stop flag is cleared under the same condition :meth:`close` sets it under, so an unload
        that comes after this call always stops the prediction.
        """
        from ..errors import ModelBusyError
        self.check_open()
        if not self.lock.acquire(blocking=False):
            raise ModelBusyError(f"model {self.path.name} is busy with another prediction; wait for it or stop it")
        try:
            with self._life:
                self._enter()
                self.stop_requested.clear()
                self._prediction_thread = threading.get_ident()
        except BaseException:
            self.lock.release()
            raise

    def release(self) -> None:
        """End a prediction begun with :meth:`acquire_prediction` (frees the model if it was unloaded meanwhile)."""
        self._prediction_thread = None
        try:
            self._leave()
        finally:
            self.lock.release()

    def close(self, wait: float = 2.0) -> None:
        """Unload: stop a running prediction and free the context and model. Safe to call twice.

        The instance counts as closed at once. If a user still holds the model after ``wait``
        seconds (a long tokenize, a stream suspended on this very thread), the memory is freed when
        that user leaves instead — never under its feet.
        """
        with self._life:
            if self._model is None:
                return
            self._closing = True
            self.stop_requested.set()
            if self._users == 0:
                self._free()
                return
            if self._prediction_thread == threading.get_ident():
                return  # called from the prediction's own thread (a fragment callback): it frees when it ends
            self._life.wait_for(lambda: self._model is None, timeout=wait)

    def _free(self) -> None:
        """Free the context and the model (called with :attr:`_life` held and no user left)."""
        if self._model is None:
            return
        if self._ctx is not None:
            llama_cpp.llama_free(self._ctx)
            self._ctx = None
        llama_cpp.llama_model_free(self._model)
        self._model = None
        self._vocab = None
        self.cached_tokens = []
        self._life.notify_all()
        _lib.release_memory()

    def __del__(self) -> None:  # best effort: free native memory with the last reference
        try:
            if hasattr(self, "_life"):
                self.close()
        except Exception:
            pass

    # -- tokens --------------------------------------------------------------------------------

    def tokenize(self, text: str, *, add_special: bool = True, parse_special: bool = False) -> list[int]:
        """Token ids of ``text`` (with BOS when the model wants it and ``add_special``)."""
        data = text.encode("utf-8", errors="replace")
        n_max = len(data) + 8
        buf = (llama_cpp.llama_token * n_max)()
        with self.use():  # an unload during a long tokenize frees the model when it returns
            vocab = self._vocab
            n = llama_cpp.llama_tokenize(vocab, data, len(data), buf, n_max, add_special, parse_special)
            if n < 0:
                n_max = -n
                buf = (llama_cpp.llama_token * n_max)()
                n = llama_cpp.llama_tokenize(vocab, data, len(data), buf, n_max, add_special, parse_special)
        return list(buf[:n])

    def token_bytes(self, token: int, special: bool = False) -> bytes:
        """The raw bytes one token decodes to (control tokens are empty unless ``special``)."""
        with self.use():
            return self.piece_unchecked(token, special, ctypes.create_string_buffer(64))

    def piece_unchecked(self, token: int, special: bool = False, buf: Any = None) -> bytes:
        """:meth:`token_bytes` for a caller that already is a user (see the module docstring); without
        ``buf`` it writes to the buffer of the holder of :attr:`lock`."""
        buf = self._piece_buf if buf is None else buf
        n = llama_cpp.llama_token_to_piece(self._vocab, token, buf, len(buf), 0, special)
        if n < 0:
            buf = ctypes.create_string_buffer(-n)
            n = llama_cpp.llama_token_to_piece(self._vocab, token, buf, len(buf), 0, special)
        return buf.raw[:n]

    def detokenize(self, tokens: list[int], special: bool = False) -> str:
        """Text of a token sequence."""
        cache = self._pieces[bool(special)]
        missing = {t for t in tokens if t not in cache}
        if missing:
            buf = ctypes.create_string_buffer(64)
            with self.use():
                for t in missing:
                    cache[t] = self.piece_unchecked(t, special, buf)
        return b"".join([cache[t] for t in tokens]).decode("utf-8", errors="replace")

    def is_eog(self, token: int) -> bool:
        """True for end-of-generation tokens (EOS, EOT, <|im_end|>, …)."""
        with self.use():
            return bool(llama_cpp.llama_vocab_is_eog(self._vocab, token))

    def _special_text(self, token: int) -> str:
        if token is None or token < 0:
            return ""
        return self.token_bytes(token, special=True).decode("utf-8", errors="replace")

    def render_prompt(self, messages: list[dict[str, Any]]) -> tuple[list[int], ChatTemplate]:
        """Apply the chat template to ``messages`` and tokenize (special tokens parsed)."""
        text = self.chat_template.render(messages, add_generation_prompt=True)
        return self.tokenize_templated(text), self.chat_template

    def tokenize_templated(self, text: str) -> list[int]:
        """Tokenize a chat template's output: special tokens parsed, no second BOS when it starts with one."""
        bos = self.chat_template.bos_token
        add_special = not (bos and text.startswith(bos))
        return self.tokenize(text, add_special=add_special, parse_special=True)

    def memory_breakdown(self) -> dict[str, int]:
        """Bytes held for weights and KV cache."""
        try:
            with self.use():
                weights = int(llama_cpp.llama_model_size(self._model))
        except ModelNotLoadedError:
            weights = 0
        return {"weights": weights, "kv_cache": self.plan.kv_cache_bytes()}
