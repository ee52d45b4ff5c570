"""The notebook session's defaults: ONE observable object shared by the magics (and the slider panels).

:func:`get_session` returns the kernel-wide :class:`Session`. It holds the default
:class:`~lmsext.config.LoadModelConfig` and :class:`~lmsext.config.PredictionConfig` (immutable
values, replaced on every change so traitlets observers fire), the identifier of the model the
magics use when none is named, and the named chats of ``%%lm_respond``.

>>> session = get_session()
>>> session.observe(lambda change: print(change["new"]), names="prediction_config")
>>> session.update("predict", {"temperature": 0.3})
"""

from __future__ import annotations

from typing import Any, Iterable

from traitlets import Dict, HasTraits, Instance, Int, Unicode, default

from .chat import Chat
from .config import LoadModelConfig, PredictionConfig
from .render.stop_reasons import bound_note
from .results import PredictionResult, PredictionStream

SECTIONS = {"load": LoadModelConfig, "predict": PredictionConfig}
"""Section names accepted by :meth:`Session.update` (and ``%lm_config``) and their config classes."""
SECTION_ALIASES = {"load": "load", "predict": "predict", "prediction": "predict"}
TRAIT_OF = {"load": "load_config", "predict": "prediction_config"}
#: ``maxTokens`` of a notebook prediction (the magics, the panels) that sets none. LM Studio's default, kept by
#: the Python API, is no limit: in front of a class a base model then runs until Stop (1,020 tokens, 20 s).
#: 256 tokens hold a full paragraph or a short story (about 190 English words) and end in about 5 s on a CPU
#: with a 300M-parameter model (~50 tok/s), in well under a second with the embedded model.
NOTEBOOK_MAX_TOKENS = 256


def section_name(name: str) -> str:
    """The canonical section ("load" or "predict") for ``name``; KeyError when it is neither."""
    return SECTION_ALIASES[name]


class Session(HasTraits):
    """Session defaults. Observe ``load_config``, ``prediction_config`` or ``model`` with traitlets."""

    load_config = Instance(LoadModelConfig, help="Load settings %lm_load starts from.")
    prediction_config = Instance(PredictionConfig, help="Prediction settings %%lm_respond/%%lm_complete start from.")
    model = Unicode(None, allow_none=True, help="Identifier of the instance used when a magic names no model.")
    chats = Dict(help="Named chats of %%lm_respond (name → lmsext.Chat).")
    max_tokens_bound = Int(NOTEBOOK_MAX_TOKENS, allow_none=True, min=0,
                           help="maxTokens of a notebook prediction that sets none (0 or None: no limit); "
                                "LMMagics.default_max_tokens sets it.")

    @default("load_config")
    def _default_load(self) -> LoadModelConfig:
        return LoadModelConfig()

    @default("prediction_config")
    def _default_prediction(self) -> PredictionConfig:
        return PredictionConfig()

    # -- configs -------------------------------------------------------------------------------

    def config(self, section: str) -> LoadModelConfig | PredictionConfig:
        """The current defaults of ``section`` ("load" or "predict")."""
        return getattr(self, TRAIT_OF[section_name(section)])

    def bounded(self, config: PredictionConfig) -> PredictionConfig:
        """``config`` with ``maxTokens`` at :attr:`max_tokens_bound` when no setting gave one (``maxTokens=false``
        is an explicit "no limit" and stays)."""
        if config.max_tokens is not None or not self.max_tokens_bound:
            return config
        return config.merged(PredictionConfig.parse({"max_tokens": self.max_tokens_bound}))

    def updated(self, section: str, values: Any, base: Any = None) -> LoadModelConfig | PredictionConfig:
        """The config ``section`` would have after :meth:`update` (from ``base``, default the current one)."""
        section = section_name(section)
        cls = SECTIONS[section]
        values = dict(values)
        unset = [k for k, v in values.items() if v is None]
        start = self.config(section) if base is None else cls.parse(base)
        new = start.merged(cls.parse({k: v for k, v in values.items() if v is not None}))
        return _without(new, unset) if unset else new

    def update(self, section: str, values: Any) -> None:
        """Merge ``values`` (any form the config class parses) into ``section``; None values unset keys.

        Validates everything first: on ConfigError nothing changes.
        """
        setattr(self, TRAIT_OF[section_name(section)], self.updated(section, values))

    def unset(self, section: str, keys: Iterable[str]) -> None:
        """Remove ``keys`` (any spelling) from ``section``'s defaults."""
        section = section_name(section)
        setattr(self, TRAIT_OF[section], _without(self.config(section), list(keys)))

    def reset(self, section: str | None = None) -> None:
        """Forget the defaults of ``section`` (both when None)."""
        for name in ([section_name(section)] if section else list(SECTIONS)):
            setattr(self, TRAIT_OF[name], SECTIONS[name]())

    # -- chats ---------------------------------------------------------------------------------

    def chat(self, name: str) -> Chat:
        """The chat called ``name`` (an empty one if there is none yet; not stored until :meth:`set_chat`)."""
        found = self.chats.get(name)
        return found.copy() if found is not None else Chat()

    def set_chat(self, name: str, chat: Chat) -> None:
        """Store ``chat`` under ``name`` (replacing the dict so observers fire)."""
        self.chats = {**self.chats, name: chat}

    def drop_chat(self, name: str) -> bool:
        """Forget the chat ``name``; False if there was none."""
        if name not in self.chats:
            return False
        self.chats = {k: v for k, v in self.chats.items() if k != name}
        return True


def _without(config: Any, keys: list[str]) -> Any:
    cls = type(config)
    names = set()
    for key in keys:
        name = cls.canonical_key(key)
        if name is None:
            raise cls.unknown_key_error(key)
        names.add(name)
    return cls.parse({k: v for k, v in config.explicit().items() if k not in names})


def bounded_config(session: Session, config: PredictionConfig) -> tuple[PredictionConfig, int | None]:
    """``config`` under the session's token bound, and the bound when it applied (None when a setting gave its own).
    The magics and the panels (front ends) both bound their predictions with it."""
    bounded = session.bounded(config)
    return bounded, (bounded.max_tokens if bounded is not config else None)


def noting_limit(stream: PredictionStream, limit: int | None) -> PredictionStream:
    """``stream`` whose result notes the notebook's default limit ``limit`` it ran under (its stats line then says
    "hit the 256-token limit"); ``stream`` itself when no default limit applied."""
    if limit is None:
        return stream

    def finish() -> PredictionResult:
        result = stream.result()
        if bound_note(limit) not in result.stats.notes:
            result.stats.notes.append(bound_note(limit))
        return result

    return PredictionStream(iter(stream), finish, stream.cancel)


_session: Session | None = None


def get_session() -> Session:
    """The kernel-wide session."""
    global _session
    if _session is None:
        _session = Session()
    return _session


__all__ = ["NOTEBOOK_MAX_TOKENS", "SECTIONS", "Session", "bounded_config", "get_session", "noting_limit",
           "section_name"]
