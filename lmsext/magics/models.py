"""``%lm_load``, ``%lm_unload``, ``%lm_ps``, ``%lm_ls`` and ``%lm_get``: the models of the kernel."""

from __future__ import annotations

import contextlib
import dataclasses
import os
from pathlib import Path
from typing import Any, Callable

from IPython.core.error import UsageError
from IPython.core.magic import line_magic, magics_class, no_var_expand
from IPython.core.magic_arguments import argument, magic_arguments

from .. import render as views
from ..config import LoadModelConfig
from ..errors import ConfigError
from ..models import EMBEDDED_MODEL_KEY
from .args import config_value, lookup, parse_args
from .flags import LOAD_FLAGS, LOAD_SETTING_ARGUMENTS, flag_values, parse_flags
from .shared import FamilyMagics, apply, user_errors


@magics_class
class ModelMagics(FamilyMagics):
    """Load, unload, list and download models."""

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
    @apply(LOAD_SETTING_ARGUMENTS)
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
            args.model = self.lm.default_model or EMBEDDED_MODEL_KEY
            if args.model == EMBEDDED_MODEL_KEY:
                self.show(views.message_bundle(f"no model given: loading the embedded default model {EMBEDDED_MODEL_KEY}"))
        model = args.model
        if model.strip().startswith("{"):
            model = lookup(args.model, self.lm._ns, "model")
            if not isinstance(model, (str, os.PathLike)):
                raise UsageError(f"model {args.model!r}: the variable holds {type(model).__name__}, not a model "
                                 "key or path")
            model = str(model)
        cfg = self.lm.session.load_config
        if args.config is not None:
            try:
                cfg = cfg.merged(LoadModelConfig.parse(config_value(args.config, self.lm._ns)))
            except ConfigError as exc:
                raise ConfigError(f"--config: {exc}", key=exc.key, value=exc.value, allowed=exc.allowed) from None
        cfg = cfg.merged(parse_flags(LoadModelConfig, flag_values(args, LOAD_FLAGS), LOAD_FLAGS))
        config = cfg if cfg.model_fields_set else None
        llms = self.lm.client.llm
        if args.estimate_only:
            estimate = llms.estimate(model, config=cfg)
            verdict = {True: "fits", False: "does NOT fit (%lm_load refuses it without --force)", None: ""}[estimate.fits]
            self.show(views.message_bundle(f"{model}: {estimate.describe()}" + (f" — {verdict}" if verdict else "")))
            return self.lm._returned("lm_load", line, estimate)
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
        self.lm.session.model = llm.identifier
        self.lm._show_load_summary(result)
        return self.lm._returned("lm_load", line, result)

    @line_magic
    @no_var_expand
    @user_errors("%lm_unload")
    @magic_arguments()
    @argument("identifier", nargs="?", help="instance to unload (default: the current model)")
    @argument("--all", action="store_true", help="unload every instance")
    def lm_unload(self, line: str) -> None:
        """Unload one loaded instance (by identifier) or all of them."""
        args = parse_args(self.lm_unload, line)
        llms = self.lm.client.llm
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
        if self.lm.session.model in names:
            self.lm.session.model = None
        self.show(views.message_bundle(f"unloaded {', '.join(names)}" if names else "nothing was loaded"))

    def _current_identifier(self) -> str:
        loaded = [llm.identifier for llm in self.lm.client.llm.list_loaded()]
        if self.lm.session.model in loaded:
            return self.lm.session.model
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
        self.show(views.loaded_models_bundle(self.lm.client.llm.list_loaded(), current=self.lm.session.model))

    @line_magic
    @user_errors("%lm_ls")
    def lm_ls(self, line: str = "") -> None:
        """The GGUF models found in the model folders, with size, architecture and quantization."""
        if line.strip():
            raise UsageError(f"takes no arguments, got {line.strip()!r}")
        loaded: dict[str, list[str]] = {}
        for llm in self.lm.client.llm.list_loaded():
            loaded.setdefault(llm.load_result.path, []).append(llm.identifier)
        self.show(views.downloaded_models_bundle(self.lm.client.list_downloaded_models(), loaded))

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
        got = self.lm.client.llm.download(args.model, args.quant,
                                       say=lambda text: self.show(views.message_bundle(text)))
        self.show(views.message_bundle(f"%lm_load {got.model_key} loads it"))
        return self.lm._returned("lm_get", line, got)


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


__all__ = ["ModelMagics"]
