"""One prediction streaming from a model server: SSE events → :class:`~lmsext.backend.TokenEvent`, with stats.

Three stream shapes: LM Studio's ``/api/v1/chat`` (``message.delta`` … ``chat.end`` with its stats), OpenAI's
``/v1/chat/completions`` and ``/v1/completions`` (``data:`` chunks, ``usage`` last with
``stream_options.include_usage``). Stats the server reports win; the rest is measured here, and a note says which.
``cancel()`` ends the stream at the next event (closing the connection stops the server's generation) as
``userStopped`` with the partial text; a server dying mid-stream ends as ``failed`` with ``stats.error`` one line.
"""

from __future__ import annotations

import json
import time
from typing import Any, Iterator

import httpx

from ..backend import GenerationStats, TokenEvent, TokenLogProb
from .transport import Transport, sse_events

#: OpenAI's ``finish_reason`` → LM Studio's stop reason.
FINISH_REASONS = {"stop": "eosFound", "length": "maxPredictedTokensReached", "tool_calls": "toolCalls",
                  "content_filter": "eosFound"}
#: The kinds of stream this module reads.
KINDS = ("lmstudio_chat", "openai_chat", "openai_completion")


class RemotePrediction:
    """A streaming prediction on a server (see :class:`lmsext.backend.Prediction`); the request is sent at once,
    so a refused connection or a rejected setting fails the call that started it."""

    def __init__(self, transport: Transport, path: str, body: dict[str, Any], kind: str, *,
                 prompt_text: str, log_probs: int) -> None:
        assert kind in KINDS
        self.kind = kind
        self.prompt_text = prompt_text
        self.log_probs = log_probs
        self.stats = GenerationStats(t_start=time.perf_counter())
        self._transport, self._path = transport, path
        self._cancelled = False
        self._deltas = 0
        self._tool_calls: dict[int, dict[str, str]] = {}  # streamed tool_calls by index: name, arguments text
        self._reported: set[str] = set()  # which stats the server reported
        self._events: Iterator[TokenEvent] | None = None
        self._response: httpx.Response | None = transport.stream(path, body)

    def __iter__(self) -> Iterator[TokenEvent]:
        if self._events is None:
            self._events = self._run()
        return self._events

    def cancel(self) -> None:
        """Stop at the next event (safe from another thread); the stream ends as ``userStopped``."""
        self._cancelled = True

    def close(self) -> None:
        """Stop reading and close the connection (the server stops generating)."""
        if self._events is not None:
            self._events.close()
        self._close_response()

    # -- the stream -----------------------------------------------------------------------------------

    def _run(self) -> Iterator[TokenEvent]:
        stats = self.stats
        response = self._response
        if response is None:
            return
        try:
            for event, data in sse_events(response.iter_lines()):
                if self._cancelled:
                    break
                if data.strip() == "[DONE]":
                    break
                try:
                    payload = json.loads(data)
                except ValueError:
                    continue
                yield from self._handle(event, payload)
                if stats.error is not None:
                    break
        except httpx.HTTPError as exc:
            if not self._cancelled:
                stats.error = str(self._transport.failure(exc, "POST", self._path))
        finally:
            self._close_response()
            self._finish()

    def _handle(self, event: str | None, payload: dict[str, Any]) -> Iterator[TokenEvent]:
        if "error" in payload and (event in (None, "error")):
            err = payload["error"]
            message = err.get("message", err) if isinstance(err, dict) else err
            self.stats.error = f"{self._transport.base_url}: {' '.join(str(message).split())}"
            return
        if self.kind == "lmstudio_chat":
            if event == "message.delta":
                yield from self._text(payload.get("content") or "", None)
            elif event == "chat.end":
                self._lmstudio_stats((payload.get("result") or {}).get("stats") or {})
            return
        if payload.get("usage"):
            self._usage(payload["usage"])
        for choice in payload.get("choices") or []:
            if self.kind == "openai_chat":
                text = (choice.get("delta") or {}).get("content") or ""
                logprob = _chat_logprob(choice.get("logprobs"))
                self._collect_tool_calls((choice.get("delta") or {}).get("tool_calls"))
                if choice.get("finish_reason"):
                    text += self._tool_call_text()
            else:
                text = choice.get("text") or ""
                logprob = _completion_logprob(choice.get("logprobs"))
            yield from self._text(text, logprob)
            if choice.get("finish_reason"):
                self.stats.stop_reason = FINISH_REASONS.get(choice["finish_reason"], "eosFound")
                if choice["finish_reason"] == "stop" and isinstance(choice.get("stop_reason"), str):
                    # vLLM's (and lmsext's server's) stop_reason: the stop string that ended the text
                    self.stats.stop_reason, self.stats.stop_string = "stopStringFound", choice["stop_reason"]
        if "stats" in payload and isinstance(payload["stats"], dict):  # LM Studio's extra (non-streamed) stats
            self._lmstudio_stats(payload["stats"])

    def _collect_tool_calls(self, deltas: Any) -> None:
        """OpenAI streams a call in pieces: the name, then the arguments' JSON text in fragments, per index."""
        for delta in deltas or []:
            if not isinstance(delta, dict):
                continue
            call = self._tool_calls.setdefault(int(delta.get("index") or 0), {"name": "", "arguments": ""})
            function = delta.get("function") or {}
            call["name"] += function.get("name") or ""
            call["arguments"] += function.get("arguments") or ""

    def _tool_call_text(self) -> str:
        """The server's tool calls written as Qwen/Hermes ``<tool_call>`` text, which lmsext parses like a
        reply of an in-kernel model (so a remote call gives the same ``tool_calls``)."""
        calls, self._tool_calls = self._tool_calls, {}
        return "".join(f'<tool_call>{{"name": {json.dumps(c["name"])}, "arguments": {c["arguments"] or "{}"}}}'
                       f'</tool_call>' for _, c in sorted(calls.items()))

    def _text(self, text: str, logprob: TokenLogProb | None) -> Iterator[TokenEvent]:
        if not text and logprob is None:
            return
        if text and self.stats.t_first_token is None:
            self.stats.t_first_token = self.stats.t_prompt_done = time.perf_counter()
        self._deltas += 1
        yield TokenEvent(text=text, token=0, logprob=logprob)

    def _usage(self, usage: dict[str, Any]) -> None:
        self.stats.prompt_tokens = int(usage.get("prompt_tokens") or 0)
        self.stats.predicted_tokens = int(usage.get("completion_tokens") or 0)
        self._reported.add("tokens")

    def _lmstudio_stats(self, st: dict[str, Any]) -> None:
        stats = self.stats
        reported = self._reported
        if st.get("input_tokens") is not None:
            stats.prompt_tokens = int(st["input_tokens"])
        if st.get("total_output_tokens") is not None:
            stats.predicted_tokens = int(st["total_output_tokens"])
            reported.add("tokens")
        if st.get("tokens_per_second") is not None:
            stats.server_tokens_per_second = float(st["tokens_per_second"])
            reported.add("tok/s")
        ttft = st.get("time_to_first_token_seconds", st.get("time_to_first_token"))
        if ttft is not None:
            stats.server_time_to_first_token_sec = float(ttft)
            reported.add("time to first token")
        if st.get("stop_reason"):
            stats.stop_reason = str(st["stop_reason"])

    def _finish(self) -> None:
        stats = self.stats
        if stats.t_end is not None:
            return
        stats.t_end = time.perf_counter()
        reported = self._reported
        if "tokens" not in reported or (self._cancelled and stats.predicted_tokens < self._deltas):
            stats.predicted_tokens = self._deltas
        if self._cancelled:
            stats.stop_reason = "userStopped"
        elif stats.error is not None:
            stats.stop_reason = "failed"
        elif stats.stop_reason is None:
            stats.stop_reason = "failed"
            stats.error = f"{self._transport.base_url}: the stream ended without a finish reason"
        measured = [x for x in ("tokens", "tok/s", "time to first token") if x not in reported]
        if not reported:
            stats.notes.append("stats measured in this kernel (the server reported none)")
        elif measured:
            stats.notes.append(f"stats: {', '.join(sorted(reported))} from the server; "
                               f"{', '.join(measured)} measured in this kernel")
        else:
            stats.notes.append("stats reported by the server")

    def _close_response(self) -> None:
        response, self._response = self._response, None
        if response is not None:
            response.close()


def _chat_logprob(block: dict[str, Any] | None) -> TokenLogProb | None:
    """OpenAI chat ``logprobs.content[0]``: ``{token, logprob, top_logprobs: [{token, logprob}]}``."""
    content = (block or {}).get("content") or []
    if not content:
        return None
    first = content[0]
    top = [(-1, t.get("token", ""), float(t.get("logprob", 0.0))) for t in first.get("top_logprobs") or []]
    return TokenLogProb(token=-1, text=first.get("token", ""), logprob=float(first.get("logprob", 0.0)), top=top)


def _completion_logprob(block: dict[str, Any] | None) -> TokenLogProb | None:
    """OpenAI completions ``logprobs``: ``{tokens, token_logprobs, top_logprobs: [{token: logprob}]}``."""
    if not block or not block.get("tokens"):
        return None
    top_maps = block.get("top_logprobs") or [{}]
    top = [(-1, t, float(lp)) for t, lp in (top_maps[0] or {}).items()]
    return TokenLogProb(token=-1, text=block["tokens"][0], logprob=float((block.get("token_logprobs") or [0.0])[0]),
                        top=top)


__all__ = ["FINISH_REASONS", "RemotePrediction"]
