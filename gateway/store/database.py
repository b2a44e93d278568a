"""The gateway's one SQLite database (WAL), worked on by one dedicated thread.

The outbox, the report journal and the window state share it, so moving data
between them (closed windows -> summaries in the outbox, journal rows
deleted) is a single transaction. Nothing touches SQLite on the event loop.
Opening brings the schema to the code's version (`gateway/store/migrations.py`),
so every table exists before any component uses it.
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from tandem.gateway.store.migrations import migrate

T = TypeVar("T")

# The database's file name in the gateway's data_dir; everyone who opens it names it so.
DATABASE_FILE = "gateway.sqlite3"


class GatewayDatabase:
    """A SQLite connection owned by a single worker thread."""

    def __init__(self, path: Path) -> None:
        _private_file(path)
        self.path = path
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="gateway-db")
        self._db: sqlite3.Connection | None = None
        try:
            self.call_sync(self._open)
        except BaseException:  # e.g. migrations.SchemaError: leave no thread behind
            self._executor.shutdown(wait=True)
            raise

    @property
    def connection(self) -> sqlite3.Connection:
        """The connection; use it only inside functions passed to call/call_sync."""
        if self._db is None:
            raise RuntimeError("gateway database is closed")
        return self._db

    async def call(self, fn: Callable[..., T], *args: Any) -> T:
        """Run fn(*args) on the database thread."""
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    def call_sync(self, fn: Callable[..., T], *args: Any) -> T:
        """Run fn(*args) on the database thread and wait (start-up, tools, tests)."""
        return self._executor.submit(fn, *args).result()

    def close(self) -> None:
        """Close the connection and stop the thread."""
        if self._db is not None:
            self.call_sync(self._close)
        self._executor.shutdown(wait=True)

    def _open(self) -> None:
        # check_same_thread=False only because the connection is created on
        # the worker thread by the executor; it is never used elsewhere.
        db = sqlite3.connect(self.path, isolation_level="DEFERRED", check_same_thread=False)
        try:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=FULL")  # acknowledged data must survive power loss
            migrate(db, self.path)
        except BaseException:
            db.close()
            raise
        self._db = db

    def _close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None


def _private_file(path: Path) -> None:
    """Create the folder 0700 and the database file 0600 (SQLite gives -wal/-shm its mode)."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    path.parent.chmod(0o700)
    os.close(os.open(path, os.O_CREAT | os.O_RDWR, 0o600))
    path.chmod(0o600)
