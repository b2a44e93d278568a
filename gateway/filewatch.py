"""Notices that a file changed by polling its mtime, size and inode (no extra dependencies).

Writers should replace files atomically (write a temporary file, then
rename): the inode changes, and a half-written file is never read.
"""

from __future__ import annotations

import os
from pathlib import Path


class FileWatch:
    """`changed()` is True the first time, then whenever the file's identity changes."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._seen: tuple[int, int, int] | bool | None = False  # False: never looked
        self.exists = False

    def changed(self) -> bool:
        """Whether the file differs from the last call (appearing and vanishing count)."""
        try:
            st = os.stat(self.path)
            current: tuple[int, int, int] | None = (st.st_mtime_ns, st.st_size, st.st_ino)
        except OSError:
            current = None
        self.exists = current is not None
        if current == self._seen:
            return False
        self._seen = current
        return True
