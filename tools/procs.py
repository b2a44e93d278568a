"""Child processes that announce readiness on stdout: used by the demo and the tests.

Each child's output is read by a thread into a bounded line buffer, echoed
with a prefix if asked, and searched by `wait_for`, so callers wait on what a
process says ("listening on ...") instead of sleeping.
"""

from __future__ import annotations

import collections
import contextlib
import os
import re
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path

MAX_LINES = 20_000


class ProcessFailed(Exception):
    """A child exited or stayed silent while we waited for it."""


class Child:
    """One supervised child process with its output captured line by line."""

    def __init__(self, name: str, argv: Sequence[str], env: dict[str, str] | None = None,
                 cwd: Path | None = None, echo: Callable[[str, str], None] | None = None) -> None:
        self.name = name
        self.argv = list(argv)
        self._lines: collections.deque[tuple[int, str]] = collections.deque(maxlen=MAX_LINES)
        self._seen = 0
        self._cond = threading.Condition()
        self._echo = echo
        self.proc = subprocess.Popen(
            self.argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            env={**os.environ, **(env or {})}, cwd=cwd, text=True, bufsize=1,
            start_new_session=True)
        self._reader = threading.Thread(target=self._read, name=f"read-{name}", daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            line = line.rstrip("\n")
            with self._cond:
                self._seen += 1
                self._lines.append((self._seen, line))
                self._cond.notify_all()
            if self._echo is not None:
                self._echo(self.name, line)
        with self._cond:
            self._cond.notify_all()

    def mark(self) -> int:
        """A position in the output; `wait_for(..., since=mark)` ignores lines before it."""
        with self._cond:
            return self._seen

    def wait_for(self, pattern: str, timeout: float, since: int = 0) -> re.Match[str]:
        """Block until a line after `since` matches pattern (regex search); return the match."""
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for number, line in self._lines:
                    if number > since:
                        match = regex.search(line)
                        if match:
                            return match
                        since = number
                if self.proc.poll() is not None and not self._reader.is_alive():
                    raise ProcessFailed(f"{self.name} exited with {self.proc.returncode} before "
                                        f"printing /{pattern}/; last lines:\n{self.tail()}")
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise ProcessFailed(f"{self.name} printed no /{pattern}/ in {timeout:g} s; "
                                        f"last lines:\n{self.tail()}")
                self._cond.wait(min(remaining, 0.5))

    @property
    def lines(self) -> list[str]:
        """Output lines captured so far (the newest MAX_LINES)."""
        with self._cond:
            return [line for _, line in self._lines]

    def tail(self, n: int = 30) -> str:
        """The last n lines of output, for error messages."""
        return "\n".join(self.lines[-n:])

    def stop(self, timeout: float = 10.0, sig: int = signal.SIGTERM) -> int:
        """Signal the child's process group, wait, kill if it lingers; return the exit code."""
        if self.proc.poll() is None:
            _signal_group(self.proc, sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                _signal_group(self.proc, signal.SIGKILL)
                self.proc.wait(timeout)
        self._reader.join(timeout)
        return self.proc.returncode

    def kill(self) -> None:
        """SIGKILL at once (crash simulation)."""
        self.stop(timeout=10.0, sig=signal.SIGKILL)


def _signal_group(proc: subprocess.Popen[str], sig: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, sig)
