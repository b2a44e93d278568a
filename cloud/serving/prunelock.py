"""One pruner among the worker processes: an exclusive lock on a file in the data dir.

The first worker to take the lock keeps it for its lifetime; when it exits the
kernel releases the lock and another worker's next timer tick takes it over.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

from tandem.cloud.datadir import FILE_MODE


class PruneLock:
    """A non-blocking, process-lifetime flock on path."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self._fd: int | None = None

    def acquire(self) -> bool:
        """True if this process holds the lock (now or already)."""
        if self._fd is not None:
            return True
        fd = os.open(self._path, os.O_RDWR | os.O_CREAT, FILE_MODE)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        self._fd = fd
        return True
