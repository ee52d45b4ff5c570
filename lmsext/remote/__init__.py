"""Remote engines: a model server (LM Studio REST v1 or any OpenAI-compatible server) behind the engine interface.

``lmsext.Client("http://host:port", api_key=...)`` builds a :class:`RemoteEngine`; see ``docs/remote.md``.
"""

from .engine import API_HOST_ENV, RemoteEngine, default_address, server_url

__all__ = ["API_HOST_ENV", "RemoteEngine", "default_address", "server_url"]
