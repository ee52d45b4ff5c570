"""``%lm_serve``: LM Studio's REST API served from this kernel, over the models loaded here."""

from __future__ import annotations

from typing import Any

from IPython.core.error import UsageError
from IPython.core.magic import line_magic, magics_class, no_var_expand
from IPython.core.magic_arguments import argument, magic_arguments

from .. import render as views
from .args import parse_args
from .shared import FamilyMagics, user_errors


@magics_class
class ServeMagics(FamilyMagics):
    """Start, stop and ask about the kernel's REST server."""

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
            return self.lm._returned("lm_serve", line, current)
        try:
            handle = server.serve(host=args.host, port=args.port, api_key=args.api_key, client=self.lm.client)
        except OSError as exc:  # serve() already names the address (said once, not twice)
            reason = str(exc.strerror or exc)
            raise UsageError(reason if reason.startswith("cannot listen on ")
                             else f"cannot listen on {args.host}:{args.port}: {reason}") from None
        except ImportError as exc:
            raise UsageError(str(exc)) from None
        self.show(views.message_bundle(f"serving LM Studio's REST API at {handle.url}"
                                       + (" (API key required)" if args.api_key else "")))
        return self.lm._returned("lm_serve", line, handle)


__all__ = ["ServeMagics"]
