"""SIGINT (Ctrl-C, Jupyter's "interrupt kernel") while llama.cpp works: a flag instead of an exception.

A KeyboardInterrupt raised inside a ctypes callback (llama.cpp's log, progress or abort callback) is
swallowed by ctypes and the C work goes on; one raised between two C calls can leave llama.cpp's
state half-written. So while engine work runs on the main thread, :class:`SigintGuard` is the SIGINT
handler and only sets a flag; the engine checks it at safe points (between tokens, in llama.cpp's
abort callback, in the load's progress callback) and ends the work cleanly.
"""

from __future__ import annotations

import signal
import threading

try:  # the C functions; signal.signal/getsignal add enum conversions (µs per call)
    from _signal import getsignal as _get_handler, signal as _set_handler
except ImportError:  # pragma: no cover - not CPython
    _get_handler, _set_handler = signal.getsignal, signal.signal


class SigintGuard:
    """While entered on the main thread, SIGINT sets ``flag`` instead of raising KeyboardInterrupt.

    Entered around each unit of engine work; a Ctrl-C that arrives while it is not entered behaves
    normally. The guard *is* the SIGINT handler, installed once per generation rather than per unit
    (``signal.signal`` costs ~4 µs: four calls per token were ~8 % of a token on stories260K). Between
    units it passes the signal on to the handler it replaced, so consumer code between tokens gets
    ordinary Ctrl-C behaviour. Each entry checks with one C call that the handler is still this
    guard (code between tokens — ipykernel between cells, the user — may have replaced it) and
    reinstalls it if not. :meth:`close` puts the previous handler back if this guard is still the
    one installed; a closed guard left installed (or chained) only ever passes signals on.
    """

    def __init__(self, flag: threading.Event) -> None:
        self.flag = flag
        self.inside = False
        self.closed = False
        self.previous: object = None
        self._main = threading.main_thread().ident
        self.active = threading.get_ident() == self._main

    def __call__(self, signum: int, frame: object) -> None:
        if self.inside:
            self.flag.set()
            return
        previous = _live_handler(self.previous)
        if callable(previous):
            previous(signum, frame)
        elif previous != signal.SIG_IGN:  # SIG_DFL, or a handler not set from Python: Python's default
            raise KeyboardInterrupt

    def __enter__(self) -> "SigintGuard":
        if self.active and threading.get_ident() == self._main:  # resumed elsewhere: not ours to take
            current = _get_handler(signal.SIGINT)
            if current is not self and not self._reaches_me(current):
                try:
                    _set_handler(signal.SIGINT, self)
                except (ValueError, TypeError):  # not the main interpreter after all
                    self.active = False
                    return self
                self.previous = current
            self.inside = True
        return self

    def _reaches_me(self, handler: object) -> bool:
        """True if ``handler`` is a guard that passes signals on to this one (another generation
        interleaved with this one installed itself over it): no reinstall, no cycle."""
        while isinstance(handler, SigintGuard):
            if handler is self:
                return True
            handler = handler.previous
        return False

    def __exit__(self, *exc) -> None:
        self.inside = False

    def close(self) -> None:
        """Uninstall: the handler this guard replaced is back (if nothing replaced the guard since)."""
        self.inside = False
        self.closed = True
        if self.active and _get_handler(signal.SIGINT) is self:
            previous = _live_handler(self.previous)
            try:
                _set_handler(signal.SIGINT, previous if previous is not None else signal.default_int_handler)
            except (ValueError, TypeError):  # finalized on another thread: stays installed, passes signals on
                pass


def _live_handler(handler: object) -> object:
    """``handler``, skipping closed guards (whose own predecessors take their place)."""
    while isinstance(handler, SigintGuard) and handler.closed:
        handler = handler.previous
    return handler
