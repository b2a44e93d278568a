"""SIGTERM and SIGINT alike end a tool through one cleanup path: a `Stopped` exception.

A tool that starts processes stops them in `finally` blocks and context
managers, which Ctrl-C (KeyboardInterrupt) already reaches. SIGTERM (a
`timeout`, a CI kill, `kill PID`) would end the interpreter without running
them and leave the children as orphans: inside `stop_on_signals()` it raises
the same exception as Ctrl-C instead. A second signal while the cleanup runs
is ignored, so the cleanup is not cut short.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType

SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)


class Stopped(KeyboardInterrupt):
    """A stop signal arrived; `signum` says which (exit code 128 + signum by convention)."""

    def __init__(self, signum: int) -> None:
        super().__init__(f"stopped by {signal.Signals(signum).name}")
        self.signum = signum

    @property
    def exit_code(self) -> int:
        """The shell's code for a process ended by this signal."""
        return 128 + self.signum


def _raise_stopped(signum: int, frame: FrameType | None) -> None:
    for sig in SIGNALS:  # once: the cleanup that follows must run to its end
        signal.signal(sig, signal.SIG_IGN)
    raise Stopped(signum)


@contextmanager
def stop_on_signals() -> Iterator[None]:
    """Within the block, SIGTERM, SIGINT and SIGHUP raise Stopped; the old handlers after it."""
    if threading.current_thread() is not threading.main_thread():
        yield  # only the main thread can take signals; its caller handles them
        return
    previous = {sig: signal.signal(sig, _raise_stopped) for sig in SIGNALS}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
