"""``%%lm_respond`` and ``%%lm_complete``: a chat reply or a raw completion of the cell, streaming inline."""

from __future__ import annotations

from typing import Any

from IPython.core.error import UsageError
from IPython.core.magic import cell_magic, magics_class, no_var_expand
from IPython.core.magic_arguments import argument, magic_arguments

from .. import render as views
from ..chat import Chat
from ..config import PredictionConfig
from ..errors import ModelNotLoadedError
from ..models import EMBEDDED_MODEL_KEY
from .args import check_variable_name, interpolate, lookup, parse_args, unescape
from .base_model import base_model_note
from .flags import PREDICTION_FLAGS, flag_values, parse_flags, prediction_arguments
from .limits import bounded_config, noting_limit
from .shared import FamilyMagics, apply, user_errors
from .stream_view import StreamView, run_stream
from .template_option import template_option

SHOW_SPECIAL_HELP = "print the special tokens the model generates (<|im_end|>, <start_of_image>) as text"


@magics_class
class PredictMagics(FamilyMagics):
    """Predictions of a cell: the chat reply (``%%lm_respond``) and the raw completion (``%%lm_complete``)."""

    @cell_magic
    @no_var_expand
    @user_errors("%%lm_respond")
    @magic_arguments("%lm_respond")
    @apply(prediction_arguments("stop string(s); repeatable; \\n and \\t are understood"))
    @argument("--system", metavar="TEXT", help="system prompt of the chat ({var} interpolation as in the cell)")
    @argument("--chat", metavar="NAME", help="continue the chat called NAME (default: 'default')")
    @argument("--no-history", action="store_true", help="one-shot: no chat history, nothing remembered")
    @argument("--template", metavar="FILE|NAME", help="chat format instead of the model's: chatml, llama3, alpaca, "
              "plain, a .json promptTemplate file or a Jinja template file")
    @argument("--show-special", action="store_true", help=SHOW_SPECIAL_HELP)
    def lm_respond(self, line: str, cell: str) -> None:
        """Reply to the cell (the user message) through the model's chat template, streaming inline.

        ``{var}`` in the cell is filled in from the notebook (``{{`` for a literal brace). Consecutive
        cells continue the chat; ``--chat NAME`` keeps several, ``--no-history`` is a one-shot. The
        result is stored in ``_lm`` (and ``--out VAR``). Settings merge as: %lm_config predict defaults
        ← LMMagics.default_prediction_config ← flags.
        """
        args = parse_args(self.lm_respond, line)
        if args.chat is not None and args.no_history:
            raise UsageError("--chat and --no-history exclude each other")
        text = interpolate(cell, self.lm._ns).strip()
        if not text:
            raise UsageError("the cell is empty: write the user message in the cell body")
        system = interpolate(args.system, self.lm._ns) if args.system is not None else None
        config = self._prediction_config(args)
        if args.template is not None:
            config = config.merged({"prompt_template": template_option(args.template)})
        _check_out(args.out)
        llm = self._model(args.model)
        if (note := base_model_note(llm)) is not None:  # once per instance
            self.show(views.message_bundle(note))
        name = args.chat or "default"
        chat = Chat() if args.no_history else self.lm.session.chat(name)
        if system is not None:
            chat.add_system_prompt(system)
        chat.add_user_message(text)
        result = run_stream(noting_limit(llm.respond_stream(chat, config, **_special(args)), self._limit), self.lm._view())
        if not args.no_history:
            chat.add_assistant_response(result.non_reasoning_content)  # the answer only
            self.lm.session.set_chat(name, chat)
        self._store(result, args.out)
        self._show_probs(result)

    @cell_magic
    @no_var_expand
    @user_errors("%%lm_complete")
    @magic_arguments("%lm_complete")
    @apply(prediction_arguments("stop string; repeatable (--stop A --stop B); \\n and \\t are understood"))
    @argument("--show-special", action="store_true", help=SHOW_SPECIAL_HELP)
    def lm_complete(self, line: str, cell: str) -> None:
        """Continue the cell's text (raw completion, no chat template), streaming inline.

        ``{var}`` in the cell is filled in from the notebook (``{{`` for a literal brace). The result
        is stored in ``_lm`` (and ``--out VAR``).
        """
        args = parse_args(self.lm_complete, line)
        prompt = interpolate(cell, self.lm._ns).rstrip("\n")
        if not prompt.strip():
            raise UsageError("the cell is empty: write the text to continue in the cell body")
        config = self._prediction_config(args)
        _check_out(args.out)
        llm = self._model(args.model)
        view = self.lm._view()
        if not isinstance(view, StreamView) or not view.markdown:  # the widget view, or plain text
            view.prompt = prompt  # dimmed before the completion, which continues it
        result = run_stream(noting_limit(llm.complete_stream(prompt, config, **_special(args)), self._limit), view)
        self._store(result, args.out)
        self._show_probs(result)

    def _show_probs(self, result: Any) -> None:
        """With ``--probs`` (``logProbs``): the reply again, each token coloured by its probability."""
        if result.logprobs:
            self.show(views.token_probs_bundle(result, with_stats=False))  # the stream showed the stats line

    def _prediction_config(self, args: Any) -> PredictionConfig:
        flags = flag_values(args, PREDICTION_FLAGS)
        if "stop_strings" in flags:
            flags["stop_strings"] = [unescape(s) for s in flags["stop_strings"]]
        table = dict(PREDICTION_FLAGS)
        if args.structured is not None:
            flags["structured"] = lookup(args.structured, self.lm._ns, "--structured")
            table["structured"] = "--structured"
        from_flags = parse_flags(PredictionConfig, flags, table)
        config = (self.lm.session.prediction_config.merged(PredictionConfig.parse(self.lm.default_prediction_config))
                  .merged(from_flags))
        config, self._limit = bounded_config(self.lm.session, config)  # the notebook's default maxTokens
        return config

    def _model(self, name: str | None):
        llms = self.lm.client.llm
        if name:
            try:
                return llms.get(name)
            except ModelNotLoadedError:
                return self._jit(name)
        if self.lm.session.model:
            try:
                return llms.get(self.lm.session.model)
            except ModelNotLoadedError:
                self.lm.session.model = None
        if self.lm.default_model:
            return self._jit(self.lm.default_model)
        loaded = llms.list_loaded()
        if loaded:
            return loaded[0]
        self.show(views.message_bundle(f"no model is loaded: using the embedded default model {EMBEDDED_MODEL_KEY} "
                                       "(%lm_load MODEL for another)"))
        return self._jit(EMBEDDED_MODEL_KEY)

    def _jit(self, key: str):
        before = {llm.identifier for llm in self.lm.client.llm.list_loaded()}
        cfg = self.lm.session.load_config
        llm = self.lm.client.llm.model(key, config=cfg if cfg.model_fields_set else None)
        if llm.identifier not in before:
            lr = llm.load_result
            self.show(views.message_bundle(f"loaded {lr.model_key} as '{llm.identifier}' just in time "
                                           f"({lr.load_time_seconds:.2f} s; %lm_ps shows its config)"))
        return llm

    def _store(self, result: Any, out: str | None) -> None:
        self.lm._ns["_lm"] = result
        if out:
            self.lm._ns[out] = result


def _special(args: Any) -> dict[str, bool]:
    """``show_special=True`` for ``--show-special`` (nothing otherwise: a server's engine then still works)."""
    return {"show_special": True} if args.show_special else {}


def _check_out(out: str | None) -> None:
    if out is not None:
        check_variable_name(out, "--out")


__all__ = ["PredictMagics"]
