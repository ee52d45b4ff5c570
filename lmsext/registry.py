"""One registry of loaded instances per engine: every :class:`lmsext.Client` on the kernel's own llama.cpp
engine sees the same loaded instances, as LM Studio's clients all see one server's.

In LM Studio every ``Client`` talks to the one server and sees the same loaded instances; in a kernel, the
kernel is that server. So:

- ``Client()`` (the in-kernel engine) — one :class:`Registry` and one engine for the whole process:
  ``Client().llm.model("M")`` after ``%lm_load M`` reuses that instance (JIT), ``%lm_ps`` lists what any
  client loaded, and an unload through one client is seen by all.
- ``Client("http://host:port", api_key=…)`` — one registry per server address, one engine per address and
  API key (a client never borrows another's key).
- ``Client(engine=some_engine)`` — one registry per engine object (an engine built by hand is its own server).

Lifetime: the shared engines and their registries live as long as the process; ``Client.close()`` only
detaches a client (its models stay loaded for the others). Unloading is explicit
(``client.llm.unload(...)`` / ``unload_all()``, ``%lm_unload``), as in LM Studio.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any, Callable

from .backend import Engine

#: The registry key of the in-kernel engine.
LOCAL = "in-kernel"
#: How the key of an engine object's own registry starts.
ENGINE_PREFIX = "engine:"


@dataclass
class Registry:
    """The loaded instances (identifier → ``LLM``) of one engine or server, and the lock guarding them."""

    key: str
    instances: dict[str, Any] = field(default_factory=dict)
    lock: threading.RLock = field(default_factory=threading.RLock)
    engines: dict[Any, Engine] = field(default_factory=dict)
    attached: dict[Any, int] = field(default_factory=dict)

    def attach(self, credential: Any, make: Callable[[], Engine]) -> Engine:
        """The engine of this registry for ``credential`` (a server's API key; None locally), made on first use;
        counts the client attached to it."""
        with self.lock:
            found = self.engines.get(credential)
            if found is None:
                found = self.engines[credential] = make()
            self.attached[credential] = self.attached.get(credential, 0) + 1
            return found

    def detach(self, credential: Any) -> None:
        """A client leaves: the engine is closed and forgotten once no client is attached and no loaded
        instance runs on it — never the in-kernel engine, which lives as long as the process, nor an engine
        object a caller passed to ``Client(engine=...)`` (the caller's to close)."""
        with self.lock:
            left = self.attached[credential] = max(0, self.attached.get(credential, 0) - 1)
            engine = self.engines.get(credential)
            if left or engine is None or self.key == LOCAL or self.key.startswith(ENGINE_PREFIX):
                return
            if any(getattr(llm, "_backend", None) is engine for llm in self.instances.values()):
                return
            del self.engines[credential]
        engine.close()


_registries: dict[str, Registry] = {}
_guard = threading.Lock()


def registry(key: str) -> Registry:
    """The process-wide registry called ``key`` (:data:`LOCAL`, a server address, or an engine's own key)."""
    with _guard:
        found = _registries.get(key)
        if found is None:
            found = _registries[key] = Registry(key)
        return found


def engine_registry(engine: Engine) -> Registry:
    """The registry of an engine object passed to ``Client(engine=...)``: its own, shared by every client given
    that same object."""
    return registry(f"{ENGINE_PREFIX}{id(engine)}:{type(engine).__name__}")


def registries() -> list[Registry]:
    """Every registry made so far (the in-kernel one first when it exists)."""
    with _guard:
        return sorted(_registries.values(), key=lambda r: r.key != LOCAL)


__all__ = ["LOCAL", "Registry", "engine_registry", "registries", "registry"]
