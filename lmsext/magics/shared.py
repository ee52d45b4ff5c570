"""What every magic family shares: the ``LMMagics`` options (``%config LMMagics.<option> = value``), the
displays, the kernel-wide client and session, and :func:`user_errors` (a user error is ONE red line).

:class:`LMMagics` is one ``Configurable`` per shell, registered in ``shell.configurables`` so that
``%config LMMagics`` lists and sets its options; each family (:class:`FamilyMagics`) reads it as ``self.lm``.
"""

from __future__ import annotations

import functools
import os
from typing import Any, Callable

from IPython.core.error import UsageError
from IPython.core.magic import Magics
from IPython.display import display
from traitlets import Bool, CaselessStrEnum, Dict, Float, Int, TraitError, Unicode, observe, validate
from traitlets.config import Configurable

from .. import render as views
from ..config import PredictionConfig
from ..errors import ConfigError, LmsextError
from ..session import NOTEBOOK_MAX_TOKENS, Session, get_session
from .args import value_goes_to_displayhook
from .stream_view import StreamView

_UNSET = object()
#: Longest error line a magic shows (argparse echoes a 5,000-digit value whole).
MAX_ERROR_CHARS = 400
MODELS_PATH_ENV = "LMSEXT_MODELS_PATH"


class LMMagics(Configurable):
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
    default_max_tokens = Int(
        NOTEBOOK_MAX_TOKENS, allow_none=True, min=0,
        help="maxTokens of %%lm_respond/%%lm_complete (and the panels) when no flag, %lm_config or "
             "default_prediction_config sets one; 0 or None: no limit (the Python API's default)."
    ).tag(config=True)
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
        if shell is not None and hasattr(shell, "config"):
            kwargs.setdefault("parent", shell)  # the shell's config (ipython_config.py, %config) applies
        super().__init__(**kwargs)
        self.shell = shell
        self._env_original: Any = _UNSET
        self._running_cell: str | None = None
        if self.models_path:
            self._apply_models_path()
        if shell is not None:
            if hasattr(shell, "configurables"):
                shell.configurables.append(self)
            shell.events.register("pre_run_cell", self._pre_run_cell)
            shell.events.register("post_run_cell", self._post_run_cell)

    def _pre_run_cell(self, info: Any) -> None:
        self._running_cell = getattr(info, "raw_cell", None)

    def _post_run_cell(self, result: Any) -> None:
        self._running_cell = None

    def close(self) -> None:
        """Stop listening to the shell's cell events, leave ``%config`` and restore the environment."""
        if self.shell is not None:
            for event, callback in (("pre_run_cell", self._pre_run_cell), ("post_run_cell", self._post_run_cell)):
                try:
                    self.shell.events.unregister(event, callback)
                except ValueError:
                    pass
            if self in getattr(self.shell, "configurables", []):
                self.shell.configurables.remove(self)
        self._restore_models_path()

    # -- the session, the client, the display mode ---------------------------------------------

    @property
    def session(self) -> Session:
        """The kernel-wide session defaults (their token bound kept at :attr:`default_max_tokens`)."""
        session = get_session()
        if session.max_tokens_bound != self.default_max_tokens:
            session.max_tokens_bound = self.default_max_tokens
        return session

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

    @property
    def use_widgets(self) -> bool:
        """Whether summaries and streams are widgets now (see ``LMMagics.widgets``)."""
        if self.widgets == "off" or self.mode != "rich":
            return False
        return self.widgets == "on" or getattr(self.shell, "kernel", None) is not None

    @validate("default_prediction_config")
    def _check_prediction_config(self, proposal: dict) -> dict:
        try:
            PredictionConfig.parse(proposal["value"])
        except ConfigError as exc:
            raise TraitError(f"LMMagics.default_prediction_config: {exc}") from None
        return proposal["value"]

    @observe("default_max_tokens")
    def _max_tokens_changed(self, change: dict) -> None:
        get_session().max_tokens_bound = change["new"]  # the panels read the bound from the session

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

    # -- displays ------------------------------------------------------------------------------

    def show(self, data: dict[str, str]) -> None:
        """Display a bundle (text + HTML)."""
        display(data, raw=True)

    def show_error(self, message: str) -> None:
        """ONE red line (at most :data:`MAX_ERROR_CHARS` characters: a huge echoed value is cut)."""
        message = " ".join(message.split())
        if len(message) > MAX_ERROR_CHARS:
            message = message[:MAX_ERROR_CHARS - 1] + "…"
        display(views.error_bundle(message), raw=True)

    def _show_load_summary(self, result: Any) -> None:
        if self.use_widgets:
            from ..widgets.summary import show_load_summary
            show_load_summary(result)
        else:
            self.show(views.load_summary_bundle(result))

    def _view(self) -> StreamView:
        """Where the next prediction streams: the stream widget, else the plain :class:`StreamView`."""
        if self.use_widgets:
            from ..widgets.stream import FLUSH_INTERVAL, WidgetStreamView
            return WidgetStreamView(max(self.stream_update_interval, FLUSH_INTERVAL))  # type: ignore[return-value]
        return StreamView(self.mode, self.stream_update_interval, markdown=self.markdown)

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


class FamilyMagics(Magics):
    """Base of each magic family: ``self.lm`` is the shell's :class:`LMMagics` (options, displays, client)."""

    def __init__(self, shell: Any, lm: LMMagics) -> None:
        super().__init__(shell=shell)
        self.lm = lm
        if shell is not None and self in getattr(shell, "configurables", []):
            shell.configurables.remove(self)  # no options of its own: %config lists LMMagics only

    def show(self, data: dict[str, str]) -> None:
        """Display a bundle (text + HTML)."""
        self.lm.show(data)

    def show_error(self, message: str) -> None:
        """ONE red line."""
        self.lm.show_error(message)


def user_errors(name: str) -> Callable[[Callable], Callable]:
    """Show lmsext's and argparse's errors as ONE red line (no traceback) and return None."""
    def decorate(func: Callable) -> Callable:
        @functools.wraps(func)
        def wrapper(self: FamilyMagics, *args: Any, **kwargs: Any) -> Any:
            try:
                return func(self, *args, **kwargs)
            except (LmsextError, UsageError) as exc:
                self.show_error(f"{name}: {exc}")
            except SystemExit:  # argparse's own exit (help printed)
                pass
            return None
        return wrapper
    return decorate


def apply(decorators: list[Callable]) -> Callable[[Callable], Callable]:
    """Apply several ``magic_arguments.argument`` decorators as if written in this order."""
    def decorate(func: Callable) -> Callable:
        for deco in reversed(decorators):
            func = deco(func)
        return func
    return decorate


__all__ = ["FamilyMagics", "LMMagics", "MAX_ERROR_CHARS", "MODELS_PATH_ENV", "apply", "user_errors"]
