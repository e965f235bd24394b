"""Ctrl-C and SIGTERM as a request to stop, acted on at safe points.

A signal handler that raises KeyboardInterrupt can fire inside a weakref callback or a finaliser,
where Python prints "Exception ignored" with a traceback and drops the exception, so the sweep
would run on. Instead the first signal only records the request; the sweep raises KeyboardInterrupt
itself at the next safe point: each optimiser iteration (the trial's progress callback), each pair,
and before each trial. A second signal raises at once.
"""

from __future__ import annotations

import signal
from typing import Any

_SIGNALS: list[int] = []  # the stop signals received by this process


def raise_if_stopped() -> None:
    """The safe point: KeyboardInterrupt if a stop was requested."""
    if _SIGNALS:
        raise KeyboardInterrupt


def catch_stop_signals(once: bool = False) -> None:
    """Route Ctrl-C (even where a background start ignored it) and SIGTERM to a stop request. With
    `once` (spawned workers) later signals are ignored so the clean-up is not cut short; otherwise a
    second signal raises KeyboardInterrupt at once."""
    _SIGNALS.clear()

    def stop(signum: int, frame: Any) -> None:
        first = not _SIGNALS
        _SIGNALS.append(signum)
        if once:
            signal.signal(signal.SIGINT, signal.SIG_IGN)
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
        elif not first:
            raise KeyboardInterrupt

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
