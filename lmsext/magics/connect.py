"""``%lm_connect URL [--api-key-env VAR]`` / ``%lm_connect local``: which engine the kernel's magics and panels use."""

from __future__ import annotations

import os
from typing import Any

from IPython.core.error import UsageError
from IPython.core.magic import line_magic, magics_class, no_var_expand
from IPython.core.magic_arguments import argument, magic_arguments

from .. import render as views
from .args import parse_args
from .shared import FamilyMagics, user_errors

#: Kept per kernel: the in-kernel client while a server is connected (its loaded models stay loaded).
_local_client: list[Any] = []


@magics_class
class ConnectMagics(FamilyMagics):
    """Switch the kernel's default client between the in-kernel engine and a model server."""

    @line_magic
    @no_var_expand
    @user_errors("%lm_connect")
    @magic_arguments()
    @argument("target", nargs="?", help="a server address (http://host:port) or 'local' (the in-kernel engine)")
    @argument("--api-key-env", metavar="VAR", help="the environment variable holding the server's API key")
    def lm_connect(self, line: str) -> Any:
        """Point %lm_load, %%lm_respond, %%lm_complete, %lm_ps, %lm_ls, %lm_unload and the panels at a model
        server (LM Studio REST v1 or OpenAI-compatible), or back at the in-kernel engine with ``local``;
        with no argument, say which engine is in use."""
        from ..client import Client, default_client, set_default_client
        args = parse_args(self.lm_connect, line)
        current = default_client()
        if args.target is None:
            self.show(views.message_bundle(f"engine: {current.describe_engine()}"))
            return None
        if args.target == "local":
            if args.api_key_env:
                raise UsageError("--api-key-env is for a server address, not 'local'")
            if not hasattr(current.engine, "url"):
                self.show(views.message_bundle(f"already on the in-kernel engine ({current.describe_engine()})"))
                return None
            current.close()
            set_default_client(_local_client.pop() if _local_client else None)
            self.show(views.message_bundle(f"back on the in-kernel engine ({default_client().describe_engine()})"))
            return None
        api_key = None
        if args.api_key_env:
            api_key = os.environ.get(args.api_key_env)
            if not api_key:
                raise UsageError(f"--api-key-env {args.api_key_env}: that environment variable is not set")
        client = Client(args.target, api_key=api_key)
        where = client.describe_engine()  # asks the server which API it speaks: an unreachable one fails here
        if hasattr(current.engine, "url"):
            current.close()
        elif not _local_client:
            _local_client.append(current)
        set_default_client(client)
        loaded = [m.model_key for m in client.list_downloaded_models()]
        self.show(views.message_bundle(f"connected to {where}; it serves: {', '.join(loaded) or 'no models'}"))
        return None


__all__ = ["ConnectMagics"]
