"""Continuous batching: one scheduler per loaded model decodes every running prediction in one batch.

A model loaded with ``maxParallelPredictions`` N > 1 gets a :class:`Scheduler` (``scheduler_for``):
N *slots*, one llama.cpp sequence id each. A prediction becomes a :class:`~.sequence.Sequence` that
waits in a FIFO queue (``queue_position``) until a slot is free. Each *step* builds one
``llama_batch`` — one token per generating sequence, then prompt chunks of newly admitted ones up to
``n_batch`` tokens — calls ``llama_decode`` once and samples each sequence from its own row of logits
with its own sampler chain. A slot keeps its sequence's tokens after it ends, so the next prompt that
starts the same way (the chat's next turn) reuses them; with a unified KV cache a prompt that shares a
longer prefix with another slot copies it (``llama_memory_seq_cp``: one system prompt decoded once).

There is no scheduler thread: the consumer that needs a token and finds no step running runs the next
step itself (for one prediction that is the single-sequence loop), the others wait for their events.
Cancel (Stop, Ctrl-C while driving, closing the stream) ends that sequence only. The scheduler holds
the model's :attr:`~.model.EngineModel.lock` while any prediction is submitted (a next-token
distribution meanwhile gets ModelBusyError, as before); each consumer is a user of the model's handles
from submission to retirement (the lifetime rule of ``engine/model.py``); an unload stops them all.
"""

from __future__ import annotations

import collections
import threading
import time
from typing import Any, Iterator

import llama_cpp

from ..backend import TokenEvent
from ..errors import LmsextError, ModelBusyError
from .batch import TokenBatch
from .batch_speculative import attach, detach, propose_all
from .generate import GenerationRequest, _common_prefix, thread_plan
from .model import EngineModel
from .sequence import Sequence
from .sigint import SigintGuard
from .slots import Slot, check_slots, forget, reuse_prefix, shift

#: A sequence whose consumer left this many events unread gets no token until it reads (a paused stream).
MAX_UNREAD_EVENTS = 256


class Scheduler:
    """The batched token loop of one :class:`EngineModel` (see the module docstring)."""

    def __init__(self, model: EngineModel) -> None:
        self.model = model
        eff = model.plan.effective
        self.n_slots = int(eff.get("max_parallel_predictions") or 1)
        self.unified = bool(eff.get("use_unified_kv_cache", True))
        with model.use():
            self.n_ctx_seq = int(llama_cpp.llama_n_ctx_seq(model._ctx))
        self.slots = [Slot(i, []) for i in range(self.n_slots)]
        self.queue: collections.deque[Sequence] = collections.deque()
        self.cond = threading.Condition(threading.Lock())  # never taken twice by one thread
        #: the sequences in slots, in admission order
        self.running: list[Sequence] = []
        self.stepping = False
        self.retiring = 0
        self.waiting = 0
        self.submitted = 0
        self.batch: TokenBatch | None = None
        self.threads = None
        self._threads_set: tuple[int, int] | None = None
        self._solo_seq: int | None = None  # the sequence id the batch's one row holds after a lone step
        self.steps = 0
        self.drafts: dict[EngineModel, list] = {}  # draft models held: [sequences using it, its DraftContext]
        stop = model.stop_requested

        @llama_cpp.ggml_abort_callback
        def _abort(_data) -> bool:  # a long prompt batch stops when an unload or Stop comes
            return stop.is_set()

        self._abort = _abort

    # -- status --------------------------------------------------------------------------------

    def status(self) -> dict[str, int]:
        """``{"running": …, "queued": …, "slots": N}`` now."""
        with self.cond:
            return {"running": sum(s.seq is not None for s in self.slots), "queued": len(self.queue),
                    "slots": self.n_slots}

    # -- consumers ------------------------------------------------------------------------------

    def open(self, req: GenerationRequest) -> Sequence:
        """The sequence of ``req`` (its prompt fitted to a sequence's context; PredictionError if it cannot be)."""
        self.model.check_open()
        return Sequence(req, self.n_ctx_seq)

    def stream(self, seq: Sequence) -> Iterator[TokenEvent]:
        """Submit ``seq`` and yield its token events as the steps produce them."""
        model = self.model
        model._enter()  # ModelNotLoadedError; a user of the handles until _leave
        guard = SigintGuard(seq.interrupted)
        try:
            self._submit(seq)
            while True:
                event = self._next_event(seq, guard)
                if event is None:
                    if seq.refused is not None:  # its draft model was busy or gone: raised as the one-slot loop does
                        raise seq.refused
                    return
                yield event
        except KeyboardInterrupt:  # Ctrl-C while waiting for another consumer's step
            seq.stats.stop_reason = seq.stats.stop_reason or "userStopped"
        except GeneratorExit:
            seq.stats.stop_reason = seq.stats.stop_reason or "userStopped"
            raise
        finally:
            guard.close()
            try:
                self._retire(seq)
            finally:
                model._leave()

    def _submit(self, seq: Sequence) -> None:
        with self.cond:
            if self.submitted == 0:
                self._activate(seq)
            self.submitted += 1
            seq.submitted = True
            self.queue.append(seq)
            seq.queue_position = len(self.queue)

    def _activate(self, seq: Sequence) -> None:
        """First prediction after idle: take the model's lock, a batch, the thread plan."""
        model = self.model
        if not model.lock.acquire(blocking=False):
            raise ModelBusyError(f"model {model.path.name} is busy with another prediction; wait for it or stop it")
        try:
            with model._life:
                model.check_open()
                model.stop_requested.clear()
            self.slots[0].cached = model.cached_tokens  # seq 0 is the single-sequence cache (distribution.py)
            check_slots(self._mem(), self.slots)
            self.batch = TokenBatch(max(model.n_batch, self.n_slots))
            self._solo_seq = None
            self.threads = thread_plan(model, seq.req.n_threads, seq.stats.notes, len(seq.prompt))
            self._threads_set = None
        except BaseException:
            model.lock.release()
            raise

    def _next_event(self, seq: Sequence, guard: SigintGuard) -> TokenEvent | None:
        """``seq``'s next event: read it, or run the next step when none runs, or wait for the running one."""
        cond = self.cond
        with cond:
            while True:
                if seq.events:
                    return seq.events.popleft()
                if seq.done:
                    return None
                if self.stepping or self.retiring:
                    self._wait()
                    continue
                progress = released = False
                try:  # (a Ctrl-C landing anywhere in here leaves the flags right)
                    self.stepping = True
                    cond.release()  # the step runs outside the lock: submissions and readers go on meanwhile
                    released = True
                    with guard:
                        progress = self._step()
                finally:
                    if released:
                        cond.acquire()
                    self.stepping = False
                    if self.waiting:
                        cond.notify_all()
                if not progress and not seq.events and not seq.done:
                    self._wait(0.01)  # every running stream is paused (unread events): let them read

    def _wait(self, timeout: float | None = None) -> None:
        self.waiting += 1
        try:
            self.cond.wait(timeout)
        finally:
            self.waiting -= 1

    def _retire(self, seq: Sequence) -> None:
        if not seq.submitted:  # refused at submission (busy, unloaded)
            seq.close()
            return
        with self.cond:
            self.retiring += 1  # no new step starts until this retirement is done
            while self.stepping:
                self._wait()
            self.retiring -= 1
            if seq in self.queue:
                self.queue.remove(seq)
                self._renumber()
            if seq.slot is not None and seq.slot.seq is seq:
                self._end(seq, "userStopped")
            seq.finish("userStopped")
            seq.close()
            if self.threads is not None:
                seq.stats.threads = {**self.threads.summary(), "batch": self.threads.batch}
            self.submitted -= 1
            if self.submitted == 0:
                self.batch.close()
                self.batch = None
                self.model.lock.release()
            self.cond.notify_all()

    # -- one step ------------------------------------------------------------------------------

    def _step(self) -> bool:
        """Admit, build one batch, decode it once, sample every sequence that got logits; False if
        nothing could be decoded."""
        model = self.model
        if model.stop_requested.is_set():  # Stop on the model, or an unload: every prediction ends
            with self.cond:
                self._stop_all()
            return True
        if self.queue:  # the queue changes under the lock only (submissions go on while a step runs)
            with self.cond:
                self._admit()
        running = self.running
        if len(running) == 1 and running[0].pending is not None and not self.queue:
            seq = running[0]  # one prediction generating: the single-sequence step, nothing to arrange
            if seq.draft is None and not seq.cancelled and len(seq.events) < MAX_UNREAD_EVENTS and self._room(seq.slot, seq):
                return self._solo(seq)
        batch = self.batch
        batch.clear()
        self._solo_seq = None
        outputs, runs, prefill = self._build(batch)
        if batch.n == 0:
            return False
        ctx = model._ctx
        if prefill:
            llama_cpp.llama_set_abort_callback(ctx, self._abort, None)
        single = batch.n == 1 and self.threads is not None
        if single:
            self.threads.step_threads()
            self._threads_set = None  # (k, batch) now, or whatever the tuner's setter left
        elif self.threads is not None:
            self._batch_threads(ctx, prefill)
        try:
            rc = batch.decode(ctx)
        finally:
            if prefill:
                llama_cpp.llama_set_abort_callback(ctx, llama_cpp.ggml_abort_callback(), None)
        if single:
            self.threads.record()
        self.steps += 1
        if rc != 0:
            self._failed(rc, runs)
            return True
        for seq, tokens in runs:
            seq.slot.cached.extend(tokens)
            if seq.pending is None:
                seq.fed += len(tokens)
                if seq.fed == len(seq.prompt):
                    seq.stats.t_prompt_done = time.perf_counter()
        for seq, idx in outputs:
            if seq.draft is not None and seq.draft.proposing:  # its rows: the last token and the draft
                alive = seq.draft.verify(seq, model, ctx, idx, self._mem())
            else:
                alive = seq.sample(model, ctx, idx)
            if not alive:
                self._end(seq)
        return True

    def _solo(self, seq: Sequence) -> bool:
        """The step of a lone generating sequence: one token, the adaptive decode threads, as generate.py."""
        slot, batch, ctx, threads = seq.slot, self.batch, self.model._ctx, self.threads
        token = seq.pending
        if batch.n == 1 and self._solo_seq == slot.seq_id:
            batch.set_token(0, token, len(slot.cached))  # the rest of the row is as the last step left it
        else:
            batch.clear()
            batch.add(token, len(slot.cached), slot.seq_id, True)
            self._solo_seq = slot.seq_id
        threads.step_threads()
        self._threads_set = None
        rc = batch.decode(ctx)
        threads.record()
        self.steps += 1
        if rc != 0:
            self._failed(rc, [(seq, [token])])
            return True
        slot.cached.append(token)
        if not seq.sample(self.model, ctx, 0):
            self._end(seq)
        return True

    def _batch_threads(self, ctx, prefill: bool) -> None:
        """llama.cpp runs a batch of more than one token on ``n_threads_batch``: a step of generated tokens only
        (one per sequence) is a decode step, so it gets the decode threads (on a small model 1: a 2-thread
        barrier per op costs more than the rows it shares); prompt chunks get the batch threads."""
        threads = self.threads
        want = (threads.current, threads.batch if prefill else threads.current)
        if want != self._threads_set:
            llama_cpp.llama_set_n_threads(ctx, *want)
            self._threads_set = want

    def _build(self, batch: TokenBatch) -> tuple[list[tuple[Sequence, int]], list[tuple[Sequence, list[int]]], bool]:
        """Fill ``batch``: one token per generating sequence, then prompt chunks (FIFO) up to its capacity;
        cancelled sequences end here. Returns the rows to sample, the tokens per sequence, whether a prompt is in."""
        outputs: list[tuple[Sequence, int]] = []
        runs: list[tuple[Sequence, list[int]]] = []
        prefilling, ready = [], []
        for seq in self.running[:]:  # a copy: _end removes
            if seq.cancelled:
                self._end(seq, "userStopped")
            elif seq.pending is None:
                prefilling.append(seq)
            elif len(seq.events) < MAX_UNREAD_EVENTS and self._room(seq.slot, seq):
                ready.append(seq)
        drafting = [s for s in ready if s.draft is not None]
        share = (batch.capacity - len(ready)) // max(1, len(drafting))
        drafts = propose_all([(s, min(self.n_ctx_seq - len(s.slot.cached) - 1, share)) for s in drafting])
        for seq in ready:  # one row each; a sequence with a draft: its last token and its draft tokens
            slot, rows = seq.slot, [seq.pending] + drafts.get(seq, [])
            outputs.append((seq, batch.add(seq.pending, len(slot.cached), slot.seq_id, True)))
            for j, token in enumerate(rows[1:], 1):
                batch.add(token, len(slot.cached) + j, slot.seq_id, True)
            runs.append((seq, rows))
        for seq in prefilling:
            budget = batch.capacity - batch.n
            if budget <= 0:
                break
            chunk = seq.prompt[seq.fed:seq.fed + budget]
            last = seq.fed + len(chunk) == len(seq.prompt)
            idx = batch.add_run(chunk, len(seq.slot.cached), seq.slot.seq_id, last)
            runs.append((seq, chunk))
            if last:
                outputs.append((seq, idx))
        return outputs, runs, bool(prefilling)

    def _room(self, slot: Slot, seq: Sequence) -> bool:
        """Make room for one more token of ``seq`` (context shift per its overflow policy) or end it."""
        if len(slot.cached) < self.n_ctx_seq:
            return True
        if seq.req.overflow_policy == "stopAtLimit" or not shift(self._mem(), slot, seq.keep):
            self._end(seq, "contextLengthReached")
            return False
        seq.stats.context_shifts += 1
        return True

    def _mem(self) -> Any:
        return llama_cpp.llama_get_memory(self.model._ctx)

    # -- admission and ends --------------------------------------------------------------------

    def _admit(self) -> None:
        """Move queued sequences (FIFO) into free slots, reusing the longest cached prefix."""
        changed = False
        while self.queue:
            seq = self.queue[0]
            if seq.cancelled:
                self.queue.popleft()
                seq.finish("userStopped")
                changed = True
                continue
            free = [s for s in self.slots if s.seq is None]
            if not free:
                break
            self.queue.popleft()
            changed = True
            slot = max(free, key=lambda s: _common_prefix(s.cached, seq.prompt))
            reused = reuse_prefix(self._mem(), slot, self.slots, seq.prompt, self.unified)
            slot.seq, seq.slot = seq, slot
            self.running.append(seq)
            try:
                seq.start(self.model, reused)
                if seq.req.speculative is not None:
                    attach(self.model, seq, self.drafts, self.n_slots)
            except Exception as exc:  # llama.cpp refused the grammar, or the draft is busy
                if isinstance(exc, LmsextError):
                    seq.refused = exc
                self._end(seq, "failed", str(exc))
        if changed:
            self._renumber()

    def _end(self, seq: Sequence, reason: str | None = None, error: str | None = None) -> None:
        """``seq`` ends: its slot is free for the queue (its cells stay for prefix reuse)."""
        seq.finish(reason, error)
        slot = seq.slot
        if slot is not None and slot.seq is seq:
            slot.seq = None
            self.running.remove(seq)
            detach(seq, self.drafts)
            if seq.stats.context_shifts:  # shifted cells no longer match a fresh run of their tokens
                forget(self._mem(), slot, seq.keep)

    def _failed(self, rc: int, runs: list[tuple[Sequence, list[int]]]) -> None:
        """A step's llama_decode failed: drop what it may have half-written, end whom it concerns."""
        for seq, _ in runs:
            forget(self._mem(), seq.slot, len(seq.slot.cached))
        if self.model.stop_requested.is_set() or rc == 2:
            return  # an unload or Stop: the next step ends every sequence
        if rc == 1:  # no room left in the (unified) KV cache: the longest sequence ends
            longest = max((seq for seq, _ in runs), key=lambda s: len(s.slot.cached))
            self._end(longest, "contextLengthReached")
            return
        for seq, _ in runs:
            self._end(seq, "failed", f"llama_decode failed (code {rc})")

    def _stop_all(self) -> None:
        for slot in self.slots:
            if slot.seq is not None:
                self._end(slot.seq, "userStopped")
        while self.queue:
            self.queue.popleft().finish("userStopped")
        if not self.model._closing:
            self.model.stop_requested.clear()

    def _renumber(self) -> None:
        for i, seq in enumerate(self.queue, 1):
            seq.queue_position = i


_CREATE = threading.Lock()


def scheduler_for(model: EngineModel) -> Scheduler:
    """The model's scheduler (created on first use)."""
    sched = getattr(model, "scheduler", None)
    if sched is None:
        with _CREATE:
            sched = getattr(model, "scheduler", None)
            if sched is None:
                sched = model.scheduler = Scheduler(model)
    return sched


__all__ = ["MAX_UNREAD_EVENTS", "Scheduler", "scheduler_for"]
