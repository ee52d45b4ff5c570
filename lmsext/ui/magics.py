"""The notebook face of lmsext: IPython magics over the public API (``%load_ext lmsext``).

* ``%lm_load MODEL [flags]`` — load (JIT, or ``--new``) and show the load-config summary.
* ``%%lm_respond`` / ``%%lm_complete`` — stream a chat reply / a raw completion inline.
* ``%lm_chat show|reset|save``, ``%lm_unload``, ``%lm_ps``, ``%lm_ls``, ``%lm_config``, ``%lm_serve``.
* ``%lm_get MODEL [--quant Q]`` — download a GGUF model from the Hugging Face hub (``client.llm.download``).
* ``%lm_panel [load|predict]`` — the slider panels (:mod:`lmsext.widgets`) over the same session defaults.

In a Jupyter kernel the load summary and the stream are widgets (``LMMagics.widgets``), with the
plain displays as their fallback.

The magics parse arguments, call ``lmsext.default_client()`` / ``LLM`` / ``Chat`` and display; the
session defaults live in :func:`lmsext.session.get_session`. A user error (bad flag or value,
unknown model, validation) prints ONE red line and changes nothing.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import os
import re
from pathlib import Path
from typing import Any, Callable

from IPython.core.error import UsageError
from IPython.core.magic import Magics, cell_magic, line_magic, magics_class, no_var_expand
from IPython.core.magic_arguments import argument, magic_arguments
from IPython.display import display
from traitlets import Bool, CaselessStrEnum, Dict, Float, TraitError, Unicode, observe, validate

from ..chat import Chat
from ..config import LoadModelConfig, PredictionConfig
from ..errors import ConfigError, LmsextError, ModelNotLoadedError
from ..models import EMBEDDED_MODEL_KEY
from .. import render as views
from .magic_args import (LOAD_FLAGS, PREDICTION_FLAGS, check_variable_name, config_value, flag_values, gpu_value,
                         interpolate, key_values, lookup, parse_args, parse_flags, unescape,
                         value_goes_to_displayhook)
from ..session import SECTIONS, Session, get_session
from .streaming import StreamView, run_stream

_UNSET = object()
#: Longest error line a magic shows (argparse echoes a 5,000-digit value whole).
MAX_ERROR_CHARS = 400
MODELS_PATH_ENV = "LMSEXT_MODELS_PATH"
NO_MODEL = "no model is loaded: run %lm_load MODEL first (or set %config LMMagics.default_model = 'KEY')"


def user_errors(name: str) -> Callable[[Callable], Callable]:
    """Show lmsext's and argparse's errors as ONE red line (no traceback) and return None."""
    def decorate(func: Callable) -> Callable:
        @functools.wraps(func)
        def wrapper(self: "LMMagics", *args: Any, **kwargs: Any) -> Any:
            try:
                return func(self, *args, **kwargs)
            except (LmsextError, UsageError) as exc:
                self.show_error(f"{name}: {exc}")
            except SystemExit:  # argparse's own exit (help printed)
                pass
            return None
        return wrapper
    return decorate


def _apply(decorators: list[Callable]) -> Callable[[Callable], Callable]:
    """Apply several ``magic_arguments.argument`` decorators as if written in this order."""
    def decorate(func: Callable) -> Callable:
        for deco in reversed(decorators):
            func = deco(func)
        return func
    return decorate


def _prediction_arguments(stop_help: str) -> list[Callable]:
    return [
        argument("--model", metavar="ID", help="loaded instance (or model key, loaded just in time) to use; "
                 "default: the last %%lm_load'ed model"),
        argument("--temperature", type=float, metavar="T", help="sampling temperature, 0..2"),
        argument("--max-tokens", type=int, metavar="N", help="most tokens to generate"),
        argument("--top-k", type=int, metavar="K", help="sample from the K most likely tokens (0 = off)"),
        argument("--top-p", type=float, metavar="P", help="nucleus sampling probability mass, 0<P<=1"),
        argument("--min-p", type=float, metavar="P", help="drop tokens less likely than P x the best"),
        argument("--repeat-penalty", type=float, metavar="R", help="penalty for repeated tokens (1 = none)"),
        argument("--seed", type=int, metavar="N", help="sampler seed (reproducible output)"),
        argument("--stop", action="extend", nargs="+", metavar="S", help=stop_help),
        argument("--structured", metavar="VAR", help="constrain the output: a notebook variable holding a "
                 "pydantic class, a JSON schema dict or LM Studio's {'type': ...} form"),
        argument("--out", metavar="VAR", help="store the PredictionResult in this variable (it is always in _lm)"),
        argument("--probs", nargs="?", type=int, const=5, metavar="N",
                 help="show each token coloured by its probability, the top N alternatives on hover (default 5)"),
    ]


@magics_class
class LMMagics(Magics):
    """lmsext's magics. Configure with ``%config LMMagics.<option> = value``."""

    default_model = Unicode(
        None, allow_none=True,
        help="Model key %%lm_respond/%%lm_complete load just in time when no model was %lm_load'ed.").tag(config=True)
    models_path = Unicode(
        "", help=f"Model folders (os.pathsep-separated) searched before ${MODELS_PATH_ENV} and LM Studio's folders."
    ).tag(config=True)
    stream_update_interval = Float(
        0.05, min=0.0, help="Seconds between display updates while a prediction streams (Jupyter front ends).").tag(
        config=True)
    default_prediction_config = Dict(
        help="Prediction settings (any LM Studio spelling) over the session defaults, under the flags.").tag(config=True)
    display_mode = CaselessStrEnum(
        ("auto", "rich", "text"), "auto",
        help="'rich' = display updates (Jupyter), 'text' = tokens to stdout (terminal), 'auto' = by the shell."
    ).tag(config=True)
    markdown = Bool(False, help="Render the final text of a prediction as Markdown.").tag(config=True)
    widgets = CaselessStrEnum(
        ("auto", "on", "off"), "auto",
        help="Show the load summary and streams as widgets (lmsext.widgets): 'auto' = in a Jupyter kernel in "
             "'rich' display mode, 'on' = whenever the display mode is 'rich', 'off' = plain displays."
    ).tag(config=True)

    def __init__(self, shell: Any = None, **kwargs: Any) -> None:
        super().__init__(shell=shell, **kwargs)
        self._env_original: Any = _UNSET
        self._running_cell: str | None = None
        if self.models_path:
            self._apply_models_path()
        if shell is not None:
            shell.events.register("pre_run_cell", self._pre_run_cell)
            shell.events.register("post_run_cell", self._post_run_cell)

    def _pre_run_cell(self, info: Any) -> None:
        self._running_cell = getattr(info, "raw_cell", None)

    def _post_run_cell(self, result: Any) -> None:
        self._running_cell = None

    def close(self) -> None:
        """Stop listening to the shell's cell events and restore the environment."""
        if self.shell is not None:
            for event, callback in (("pre_run_cell", self._pre_run_cell), ("post_run_cell", self._post_run_cell)):
                try:
                    self.shell.events.unregister(event, callback)
                except ValueError:
                    pass
        self._restore_models_path()

    # -- plumbing ------------------------------------------------------------------------------

    @property
    def session(self) -> Session:
        """The kernel-wide session defaults."""
        return get_session()

    @property
    def client(self):
        """The kernel-wide client."""
        from ..client import default_client
        return default_client()

    @property
    def mode(self) -> str:
        """"rich" in a kernel (Jupyter, VS Code, nbclient), "text" in terminal IPython."""
        if self.display_mode != "auto":
            return self.display_mode
        shell = self.shell
        if type(shell).__name__ == "TerminalInteractiveShell" or getattr(shell, "kernel", None) is None:
            return "text"
        return "rich"

    @validate("default_prediction_config")
    def _check_prediction_config(self, proposal: dict) -> dict:
        try:
            PredictionConfig.parse(proposal["value"])
        except ConfigError as exc:
            raise TraitError(f"LMMagics.default_prediction_config: {exc}") from None
        return proposal["value"]

    @observe("models_path")
    def _models_path_changed(self, change: dict) -> None:
        self._apply_models_path()

    def _apply_models_path(self) -> None:
        if self._env_original is _UNSET:
            self._env_original = os.environ.get(MODELS_PATH_ENV)
        parts = [p for p in (self.models_path, self._env_original) if p]
        if parts:
            os.environ[MODELS_PATH_ENV] = os.pathsep.join(parts)
        else:
            os.environ.pop(MODELS_PATH_ENV, None)

    def _restore_models_path(self) -> None:
        if self._env_original is _UNSET:
            return
        if self._env_original is None:
            os.environ.pop(MODELS_PATH_ENV, None)
        else:
            os.environ[MODELS_PATH_ENV] = self._env_original
        self._env_original = _UNSET

    def show(self, data: dict[str, str]) -> None:
        """Display a bundle (text + HTML)."""
        display(data, raw=True)

    def show_error(self, message: str) -> None:
        """ONE red line (at most :data:`MAX_ERROR_CHARS` characters: a huge echoed value is cut)."""
        message = " ".join(message.split())
        if len(message) > MAX_ERROR_CHARS:
            message = message[:MAX_ERROR_CHARS - 1] + "…"
        display(views.error_bundle(message), raw=True)

    @property
    def use_widgets(self) -> bool:
        """Whether summaries and streams are widgets now (see ``LMMagics.widgets``)."""
        if self.widgets == "off" or self.mode != "rich":
            return False
        return self.widgets == "on" or getattr(self.shell, "kernel", None) is not None

    def _show_load_summary(self, result: Any) -> None:
        if self.use_widgets:
            from ..widgets.summary import show_load_summary
            show_load_summary(result)
        else:
            self.show(views.load_summary_bundle(result))

    def _returned(self, magic: str, line: str, value: Any) -> Any:
        """The magic's value, unless the running cell's displayhook would show it a second time."""
        if self._running_cell is None:
            return value
        try:
            code = self.shell.transform_cell(self._running_cell)
        except Exception:
            return value
        mode = getattr(self.shell, "ast_node_interactivity", "last_expr")
        return None if value_goes_to_displayhook(code, mode, magic, line) else value

    @property
    def _ns(self) -> dict[str, Any]:
        return self.shell.user_ns

    # -- %lm_load ------------------------------------------------------------------------------

    @line_magic
    @no_var_expand
    @user_errors("%lm_load")
    @magic_arguments()
    @argument("model", nargs="?", help="model key (stories260K), GGUF path or Hugging Face id "
              "owner/repo[/file.gguf]; {var} takes it from a variable (default: LMMagics.default_model, else the "
              "embedded default model stories260K)")
    @argument("--identifier", metavar="ID", help="instance identifier (default: the model key, then key:2, …)")
    @argument("--new", action="store_true",
              help="always load a new instance (client.llm.load); default: JIT, reuse a loaded one")
    @argument("--context-length", type=int, metavar="N", help="context size in tokens (contextLength)")
    @argument("--gpu", type=gpu_value, metavar="off|max|0..1", help="share of layers offloaded to the GPU")
    @argument("--eval-batch-size", type=int, metavar="N", help="prompt tokens per batch (evalBatchSize)")
    @argument("--flash-attention", dest="flash_attention", action="store_const", const=True, default=None,
              help="use flash attention")
    @argument("--no-flash-attention", dest="flash_attention", action="store_const", const=False,
              help="do not use flash attention")
    @argument("--num-experts", type=int, metavar="N", help="experts used per token (MoE models)")
    @argument("--offload-kv-cache-to-gpu", dest="offload_kv_cache_to_gpu", action="store_const", const=True,
              default=None, help="keep the KV cache in GPU memory")
    @argument("--no-offload-kv-cache-to-gpu", dest="offload_kv_cache_to_gpu", action="store_const", const=False,
              help="keep the KV cache in RAM")
    @argument("--seed", type=int, metavar="N", help="default sampler seed of the instance")
    @argument("--k-cache", metavar="TYPE", help="K cache type: f32, f16, q8_0, q4_0, q4_1, iq4_nl, q5_0, q5_1 "
              "(llamaKCacheQuantizationType)")
    @argument("--v-cache", metavar="TYPE", help="V cache type, as --k-cache (quantized needs --flash-attention)")
    @argument("--mmap", dest="mmap", action="store_const", const=True, default=None,
              help="memory-map the model file (tryMmap)")
    @argument("--no-mmap", dest="mmap", action="store_const", const=False, help="read the file instead of mapping it")
    @argument("--config", metavar="JSON_OR_{var}",
              help="load config as a JSON object or a {variable} holding a dict; the flags override it")
    @argument("--estimate-only", action="store_true",
              help="only predict the memory the load would take (weights, KV cache, compute buffers); load nothing")
    @argument("--force", action="store_true",
              help="load even when the memory estimate exceeds the available memory")
    @argument("--verbose", action="store_true", help="also show llama.cpp's own log of the load")
    def lm_load(self, line: str) -> Any:
        """Load a model (LM Studio's JIT semantics unless --new) and show the load-config summary.

        The summary lists the model, every effective setting under its REST name, what was requested
        and applied differently (and why), memory and load time. ``r = %lm_load …`` keeps the LoadResult.
        Settings merge as: %lm_config load defaults ← --config ← flags.
        """
        args = parse_args(self.lm_load, line)
        if args.model is None:
            args.model = self.default_model or EMBEDDED_MODEL_KEY
            if args.model == EMBEDDED_MODEL_KEY:
                self.show(views.message_bundle(f"no model given: loading the embedded default model {EMBEDDED_MODEL_KEY}"))
        model = args.model
        if model.strip().startswith("{"):
            model = lookup(args.model, self._ns, "model")
            if not isinstance(model, (str, os.PathLike)):
                raise UsageError(f"model {args.model!r}: the variable holds {type(model).__name__}, not a model "
                                 "key or path")
            model = str(model)
        cfg = self.session.load_config
        if args.config is not None:
            try:
                cfg = cfg.merged(LoadModelConfig.parse(config_value(args.config, self._ns)))
            except ConfigError as exc:
                raise ConfigError(f"--config: {exc}", key=exc.key, value=exc.value, allowed=exc.allowed) from None
        cfg = cfg.merged(parse_flags(LoadModelConfig, flag_values(args, LOAD_FLAGS), LOAD_FLAGS))
        config = cfg if cfg.model_fields_set else None
        llms = self.client.llm
        if args.estimate_only:
            estimate = llms.estimate(model, config=cfg)
            verdict = {True: "fits", False: "does NOT fit (%lm_load refuses it without --force)", None: ""}[estimate.fits]
            self.show(views.message_bundle(f"{model}: {estimate.describe()}" + (f" — {verdict}" if verdict else "")))
            return self._returned("lm_load", line, estimate)
        before = {llm.identifier: llm for llm in llms.list_loaded()}
        force = args.force
        with _llama_log(args.verbose, lambda log: self.show(_log_bundle(log))):
            if args.new:
                llm = llms.load(model, config=cfg, identifier=args.identifier, force=force)
            elif args.identifier is not None and args.identifier in before:
                existing = before[args.identifier]
                if not _same_model(existing, model):
                    raise UsageError(f"identifier '{args.identifier}' is taken by {existing.model_key}; "
                                     "choose another or %lm_unload it")
                llm = llms.model(args.identifier, config=config, force=force)
            elif args.identifier is not None:
                llm = llms.load(model, config=cfg, identifier=args.identifier, force=force)
            else:
                llm = llms.model(model, config=config, force=force)
        result = llm.load_result
        if llm.identifier in before:
            from ..client import JIT_NOTE
            why = ("the requested config was ignored (LM Studio's JIT semantics); use --new to load another "
                   "instance with it") if config is not None else "use --new to load another instance"
            result = dataclasses.replace(result, notes=[n for n in result.notes if n != JIT_NOTE]
                                         + [f"already loaded: returned the loaded instance; {why}"], reused=True)
        self.session.model = llm.identifier
        self._show_load_summary(result)
        return self._returned("lm_load", line, result)

    # -- %%lm_respond / %%lm_complete -------------------------------------------------------------

    @cell_magic
    @no_var_expand
    @user_errors("%%lm_respond")
    @magic_arguments("%lm_respond")
    @_apply(_prediction_arguments("stop string(s); repeatable; \\n and \\t are understood"))
    @argument("--system", metavar="TEXT", help="system prompt of the chat ({var} interpolation as in the cell)")
    @argument("--chat", metavar="NAME", help="continue the chat called NAME (default: 'default')")
    @argument("--no-history", action="store_true", help="one-shot: no chat history, nothing remembered")
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
        text = interpolate(cell, self._ns).strip()
        if not text:
            raise UsageError("the cell is empty: write the user message in the cell body")
        system = interpolate(args.system, self._ns) if args.system is not None else None
        config = self._prediction_config(args)
        _check_out(args.out)
        llm = self._model(args.model)
        name = args.chat or "default"
        chat = Chat() if args.no_history else self.session.chat(name)
        if system is not None:
            chat.add_system_prompt(system)
        chat.add_user_message(text)
        result = run_stream(llm.respond_stream(chat, config), self._view())
        if not args.no_history:
            chat.add_assistant_response(result.content)
            self.session.set_chat(name, chat)
        self._store(result, args.out)
        self._show_probs(result)

    @cell_magic
    @no_var_expand
    @user_errors("%%lm_complete")
    @magic_arguments("%lm_complete")
    @_apply(_prediction_arguments("stop string; repeatable (--stop A --stop B); \\n and \\t are understood"))
    def lm_complete(self, line: str, cell: str) -> None:
        """Continue the cell's text (raw completion, no chat template), streaming inline.

        ``{var}`` in the cell is filled in from the notebook (``{{`` for a literal brace). The result
        is stored in ``_lm`` (and ``--out VAR``).
        """
        args = parse_args(self.lm_complete, line)
        prompt = interpolate(cell, self._ns).rstrip("\n")
        if not prompt.strip():
            raise UsageError("the cell is empty: write the text to continue in the cell body")
        config = self._prediction_config(args)
        _check_out(args.out)
        llm = self._model(args.model)
        result = run_stream(llm.complete_stream(prompt, config), self._view())
        self._store(result, args.out)
        self._show_probs(result)

    def _show_probs(self, result: Any) -> None:
        """With ``--probs`` (``logProbs``): the reply again, each token coloured by its probability."""
        if result.logprobs:
            self.show(views.token_probs_bundle(result))

    def _prediction_config(self, args: Any) -> PredictionConfig:
        flags = flag_values(args, PREDICTION_FLAGS)
        if "stop_strings" in flags:
            flags["stop_strings"] = [unescape(s) for s in flags["stop_strings"]]
        table = dict(PREDICTION_FLAGS)
        if args.structured is not None:
            flags["structured"] = lookup(args.structured, self._ns, "--structured")
            table["structured"] = "structured"
        from_flags = parse_flags(PredictionConfig, flags, table)
        return (self.session.prediction_config.merged(PredictionConfig.parse(self.default_prediction_config))
                .merged(from_flags))

    def _model(self, name: str | None):
        llms = self.client.llm
        if name:
            try:
                return llms.get(name)
            except ModelNotLoadedError:
                return self._jit(name)
        if self.session.model:
            try:
                return llms.get(self.session.model)
            except ModelNotLoadedError:
                self.session.model = None
        if self.default_model:
            return self._jit(self.default_model)
        loaded = llms.list_loaded()
        if loaded:
            return loaded[0]
        raise UsageError(NO_MODEL)

    def _jit(self, key: str):
        before = {llm.identifier for llm in self.client.llm.list_loaded()}
        cfg = self.session.load_config
        llm = self.client.llm.model(key, config=cfg if cfg.model_fields_set else None)
        if llm.identifier not in before:
            lr = llm.load_result
            self.show(views.message_bundle(f"loaded {lr.model_key} as '{llm.identifier}' just in time "
                                           f"({lr.load_time_seconds:.2f} s; %lm_ps shows its config)"))
        return llm

    def _view(self) -> StreamView:
        if self.use_widgets:
            from ..widgets.stream import FLUSH_INTERVAL, WidgetStreamView
            return WidgetStreamView(max(self.stream_update_interval, FLUSH_INTERVAL))  # type: ignore[return-value]
        return StreamView(self.mode, self.stream_update_interval, markdown=self.markdown)

    def _store(self, result: Any, out: str | None) -> None:
        self._ns["_lm"] = result
        if out:
            self._ns[out] = result

    # -- %lm_chat ------------------------------------------------------------------------------

    @line_magic
    @no_var_expand
    @user_errors("%lm_chat")
    @magic_arguments()
    @argument("action", choices=("show", "reset", "save"), help="show the chat, forget it, or save it as JSON")
    @argument("path", nargs="?", help="file to write (save)")
    @argument("--chat", metavar="NAME", default="default", help="which chat (default: 'default')")
    def lm_chat(self, line: str) -> None:
        """Show, reset or save (as LM Studio's ``{"messages": [...]}`` JSON) a chat of %%lm_respond."""
        args = parse_args(self.lm_chat, line)
        name = args.chat
        if args.action == "show":
            self.show(views.chat_bundle(name, self.session.chat(name)))
        elif args.action == "reset":
            existed = self.session.drop_chat(name)
            self.show(views.message_bundle(f"chat '{name}' reset" if existed else f"chat '{name}' was empty"))
        else:
            if not args.path:
                raise UsageError("save needs a PATH: %lm_chat save chat.json")
            chat = self.session.chat(name)
            path = Path(args.path).expanduser()
            try:
                path.write_text(chat.to_json(), encoding="utf-8")
            except OSError as exc:
                raise UsageError(f"cannot write {path}: {exc.strerror or exc}") from None
            self.show(views.message_bundle(f"saved chat '{name}' ({len(chat)} messages) to {path}"))

    # -- %lm_unload / %lm_ps / %lm_ls ------------------------------------------------------------

    @line_magic
    @no_var_expand
    @user_errors("%lm_unload")
    @magic_arguments()
    @argument("identifier", nargs="?", help="instance to unload (default: the current model)")
    @argument("--all", action="store_true", help="unload every instance")
    def lm_unload(self, line: str) -> None:
        """Unload one loaded instance (by identifier) or all of them."""
        args = parse_args(self.lm_unload, line)
        llms = self.client.llm
        if args.all and args.identifier:
            raise UsageError("give an identifier or --all, not both")
        if args.all:
            names = [llm.identifier for llm in llms.list_loaded()]
            llms.unload_all()
        else:
            ident = args.identifier or self._current_identifier()
            llm = llms.get(ident)
            names = [llm.identifier]
            llms.unload(llm.identifier)
        if self.session.model in names:
            self.session.model = None
        self.show(views.message_bundle(f"unloaded {', '.join(names)}" if names else "nothing was loaded"))

    def _current_identifier(self) -> str:
        loaded = [llm.identifier for llm in self.client.llm.list_loaded()]
        if self.session.model in loaded:
            return self.session.model
        if len(loaded) == 1:
            return loaded[0]
        if not loaded:
            raise UsageError("no model is loaded")
        raise UsageError(f"which one? loaded: {', '.join(loaded)} (or --all)")

    @line_magic
    @user_errors("%lm_ps")
    def lm_ps(self, line: str = "") -> None:
        """The loaded instances with their effective config."""
        if line.strip():
            raise UsageError(f"takes no arguments, got {line.strip()!r}")
        self.show(views.loaded_models_bundle(self.client.llm.list_loaded(), current=self.session.model))

    @line_magic
    @user_errors("%lm_ls")
    def lm_ls(self, line: str = "") -> None:
        """The GGUF models found in the model folders, with size, architecture and quantization."""
        if line.strip():
            raise UsageError(f"takes no arguments, got {line.strip()!r}")
        loaded: dict[str, list[str]] = {}
        for llm in self.client.llm.list_loaded():
            loaded.setdefault(llm.load_result.path, []).append(llm.identifier)
        self.show(views.downloaded_models_bundle(self.client.list_downloaded_models(), loaded))

    # -- %lm_config ----------------------------------------------------------------------------

    @line_magic
    @no_var_expand
    @user_errors("%lm_config")
    def lm_config(self, line: str = "") -> None:
        """Show or set the session defaults the magics (and panels) use.

        Usage::

          %lm_config                                  show all defaults
          %lm_config load|predict                     show one section
          %lm_config predict temperature=0.3 maxTokens=40
          %lm_config load contextLength=1024 gpu='off'
          %lm_config temperature=0.3                  the section is inferred from the key
          %lm_config predict temperature=None         unset a key
          %lm_config [load|predict] --reset           forget the defaults (of one section)

        Keys take any LM Studio spelling (``maxTokens``, ``max_tokens``); values are Python literals
        (strings without quotes are fine: ``contextOverflowPolicy=rollingWindow``), also JSON's
        true/false/null. %%lm_respond merges: these defaults ← LMMagics.default_prediction_config ← flags.
        """
        text = line.strip()
        section = None
        m = re.match(r"(load|predict|prediction)(?:\s+|$)", text)
        if m:
            section = "predict" if m.group(1).startswith("predict") else "load"
            text = text[m.end():]
        words = text.split()
        reset = "--reset" in words
        if reset:
            text = " ".join(w for w in words if w != "--reset")
        values = key_values(text)
        groups: dict[str, dict[str, Any]] = {}
        for key, value in values.items():
            groups.setdefault(section or _section_of(key), {})[key] = value
        new = {sec: self._updated(sec, vals, reset) for sec, vals in groups.items()}
        if reset:
            self.session.reset(section)
        for sec, cfg in new.items():
            setattr(self.session, "load_config" if sec == "load" else "prediction_config", cfg)
        shown = [section] if section else (list(groups) if groups else list(SECTIONS))
        self.show(views.config_bundle([layer for sec in shown for layer in self._config_layers(sec)]))

    def _updated(self, section: str, values: dict[str, Any], reset: bool):
        return self.session.updated(section, values, SECTIONS[section]() if reset else None)

    def _config_layers(self, section: str) -> list[tuple[str, dict[str, Any]]]:
        if section == "load":
            return [("load defaults (%lm_load starts from these; --config and flags override them)",
                     self.session.load_config.to_dict())]
        session_cfg = self.session.prediction_config
        magic_cfg = PredictionConfig.parse(self.default_prediction_config)
        return [("prediction defaults (%lm_config predict)", session_cfg.to_dict()),
                ("LMMagics.default_prediction_config (overrides the defaults above)", magic_cfg.to_dict()),
                ("effective for %%lm_respond / %%lm_complete (flags override these)",
                 session_cfg.merged(magic_cfg).to_dict())]

    # -- %lm_get -------------------------------------------------------------------------------

    @line_magic
    @no_var_expand
    @user_errors("%lm_get")
    @magic_arguments()
    @argument("model", help="Hugging Face repository id (owner/repo), owner/repo/file.gguf, owner/repo@Q4_K_M "
              "or a huggingface.co URL")
    @argument("--quant", metavar="Q", help="quantization to pick, e.g. Q4_K_M (default: the smallest of at least "
              "4 bits)")
    def lm_get(self, line: str) -> Any:
        """Download a GGUF model into the model folders (as ``lms get``), with a progress bar; then %lm_load its key.

        ``m = %lm_get …`` keeps the DownloadedModel. Offline, an unknown repository or a file that is not
        GGUF is ONE red line, and nothing is added to the catalog.
        """
        args = parse_args(self.lm_get, line)
        got = self.client.llm.download(args.model, args.quant,
                                       say=lambda text: self.show(views.message_bundle(text)))
        self.show(views.message_bundle(f"%lm_load {got.model_key} loads it"))
        return self._returned("lm_get", line, got)

    # -- %lm_panel -----------------------------------------------------------------------------

    @line_magic
    @no_var_expand
    @user_errors("%lm_panel")
    @magic_arguments()
    @argument("which", nargs="?", choices=("load", "predict", "both"), default="both",
              help="the load-settings panel, the prediction panel, or both (default)")
    @argument("model", nargs="?", help="model key, path or loaded instance for the load panel "
              "(default: the current model)")
    def lm_panel(self, line: str) -> Any:
        """Show the slider panels: a model's load settings (Load), prediction settings with a prompt (Send, Stop).

        The panels edit the session defaults the magics use: moving the temperature slider changes what
        the next %%lm_respond uses, and %lm_config changes move the sliders. ``p = %lm_panel predict``
        keeps the panel (``p.result`` is its last prediction).
        """
        args = parse_args(self.lm_panel, line)
        try:
            import ipywidgets
            from .. import widgets
        except ImportError as exc:
            raise UsageError(f"the panels need ipywidgets and anywidget ({exc})") from None
        panels: list[Any] = []
        if args.which in ("load", "both"):
            target = self._panel_model(args.model)
            if target is None and (args.which == "load" or not self.client.llm.list_loaded()):
                target = EMBEDDED_MODEL_KEY
                self.show(views.message_bundle(f"no model given: the load panel is for the embedded default "
                                               f"model {EMBEDDED_MODEL_KEY}"))
            if target is not None:
                panels.append(widgets.LoadPanel(target))
        if args.which in ("predict", "both"):
            panels.append(widgets.PredictionPanel())
        shown = panels[0] if len(panels) == 1 else ipywidgets.VBox(panels)
        display(shown)
        return self._returned("lm_panel", line, shown)

    def _panel_model(self, name: str | None) -> Any:
        """The loaded instance (or model key) the load panel is for; None when there is no candidate."""
        llms = self.client.llm
        if name:
            try:
                return llms.get(name)
            except ModelNotLoadedError:
                return name
        loaded = llms.list_loaded()
        current = [llm for llm in loaded if llm.identifier == self.session.model]
        if current or len(loaded) == 1:
            return (current or loaded)[0]
        return self.default_model

    # -- %lm_serve -----------------------------------------------------------------------------

    @line_magic
    @no_var_expand
    @user_errors("%lm_serve")
    @magic_arguments()
    @argument("--host", default="127.0.0.1", help="interface to listen on (default 127.0.0.1)")
    @argument("--port", type=int, default=1234, help="port (default 1234, LM Studio's)")
    @argument("--api-key", metavar="KEY", help="require this bearer token")
    @argument("--stop", action="store_true", help="stop the running server")
    @argument("--status", action="store_true", help="say whether a server runs, and where")
    def lm_serve(self, line: str) -> Any:
        """Serve LM Studio's REST API from this kernel, over the models loaded here."""
        args = parse_args(self.lm_serve, line)
        if args.stop and args.status:
            raise UsageError("--stop and --status exclude each other")
        try:
            from .. import server
        except ImportError as exc:
            raise UsageError(f"the REST server is not available in this installation ({exc})") from None
        current = server.current_server()
        if args.status:
            self.show(views.message_bundle(f"serving at {current.url}" if current else "no server is running"))
            return None
        if args.stop:
            if current is None:
                self.show(views.message_bundle("no server is running"))
            else:
                current.stop()
                self.show(views.message_bundle(f"stopped the server at {current.url}"))
            return None
        if current is not None:
            self.show(views.message_bundle(f"already serving at {current.url} (%lm_serve --stop first)"))
            return self._returned("lm_serve", line, current)
        try:
            handle = server.serve(host=args.host, port=args.port, api_key=args.api_key, client=self.client)
        except OSError as exc:  # serve() already names the address (said once, not twice)
            reason = str(exc.strerror or exc)
            raise UsageError(reason if reason.startswith("cannot listen on ")
                             else f"cannot listen on {args.host}:{args.port}: {reason}") from None
        except ImportError as exc:
            raise UsageError(str(exc)) from None
        self.show(views.message_bundle(f"serving LM Studio's REST API at {handle.url}"
                                       + (" (API key required)" if args.api_key else "")))
        return self._returned("lm_serve", line, handle)


def _section_of(key: str) -> str:
    in_load = LoadModelConfig.canonical_key(key) is not None
    in_predict = PredictionConfig.canonical_key(key) is not None
    if in_load and in_predict:
        raise UsageError(f"{key} is both a load and a prediction setting: write %lm_config load {key}=… "
                         f"or %lm_config predict {key}=…")
    if in_load:
        return "load"
    if in_predict:
        return "predict"
    raise PredictionConfig.unknown_key_error(key)


@contextlib.contextmanager
def _llama_log(enabled: bool, show: Callable[[list[Any]], None]) -> Any:
    """``--verbose``: collect llama.cpp's log records (INFO and up) of the block and ``show`` them, also
    when the load fails (before its red line). Nothing is collected otherwise."""
    if not enabled:
        yield
        return
    import logging
    from ..llama_logs import capture_logs
    with capture_logs(logging.INFO) as records:
        try:
            yield
        finally:
            show(list(records))


def _log_bundle(records: list[Any]) -> dict[str, str]:
    """llama.cpp's log of a load, one record per line with its level."""
    import logging
    lines = [f"{logging.getLevelName(r.levelno):<7} {r.getMessage()}" for r in records]
    text = "\n".join(lines) or "(llama.cpp logged nothing: the model was already loaded)"
    return views.bundle(text, f'<details><summary>llama.cpp log ({len(lines)} lines)</summary><pre '
                              f'style="font-size:85%;max-height:30em;overflow:auto">{views.esc(text)}</pre></details>')


def _same_model(llm: Any, name: str) -> bool:
    wanted = name.strip().lower()
    return wanted in (llm.model_key.lower(), llm.identifier.lower()) or Path(name).stem.lower() == Path(
        llm.load_result.path).stem.lower()


def _check_out(out: str | None) -> None:
    if out is not None:
        check_variable_name(out, "--out")


# ------------------------------------------------------------------------------ extension

_loaded: dict[int, LMMagics] = {}


def load_ipython_extension(ipython: Any) -> None:
    """``%load_ext lmsext``: register the magics (once per shell)."""
    if id(ipython) in _loaded:
        return
    magics = LMMagics(shell=ipython)
    ipython.register_magics(magics)
    _loaded[id(ipython)] = magics


def unload_ipython_extension(ipython: Any) -> None:
    """``%unload_ext lmsext``: remove the magics (loaded models stay loaded)."""
    magics = _loaded.pop(id(ipython), None)
    if magics is None:
        return
    manager = ipython.magics_manager
    for kind, names in LMMagics.magics.items():
        for name in names:
            manager.magics[kind].pop(name, None)
    manager.registry.pop(type(magics).__name__, None)
    if magics in getattr(ipython, "configurables", []):
        ipython.configurables.remove(magics)
    magics.close()


def get_magics(ipython: Any) -> LMMagics | None:
    """The registered :class:`LMMagics` of ``ipython`` (None before ``%load_ext lmsext``)."""
    return _loaded.get(id(ipython))


__all__ = ["LMMagics", "get_magics", "load_ipython_extension", "unload_ipython_extension"]
