"""The gateway database's versioned schema: numbered steps applied at open, tracked in user_version.

`PRAGMA user_version` holds the number of the last step applied (0: a
database written before versioning, or a new file). Opening applies every
later step in order, each in its own write-locked transaction together with
the new version number, so a crash or a failing step leaves the database at
the previous version, and two processes opening it at once apply a step once.
A database whose version is newer than the code's is refused, untouched.

Adding a column or a table: append a Migration with the next number (never
edit a released step) and test it (tests/gateway/test_store_migrations.py;
docs/migrations.md).
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Migration:
    """One step of the schema: SQL statements that take version - 1 to version."""

    version: int
    summary: str
    sql: str


class SchemaError(Exception):
    """The database cannot be opened by this code (too new, or a step failed and was undone)."""


# Version 1 is the schema from before versioning. Its statements keep IF NOT EXISTS
# because a version-0 database already has these tables (all, or those the components
# it ran had made); later steps are plain DDL.
_V1_UNVERSIONED_TABLES = """
CREATE TABLE IF NOT EXISTS records (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    priority INTEGER NOT NULL,
    created_ms INTEGER NOT NULL,
    body BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS records_by_priority ON records (priority, id);
CREATE TABLE IF NOT EXISTS batches (
    seq INTEGER PRIMARY KEY,
    priority INTEGER NOT NULL,
    created_ms INTEGER NOT NULL,
    records INTEGER NOT NULL,
    envelope BLOB NOT NULL,
    dead_reason TEXT
);
CREATE TABLE IF NOT EXISTS corrupt_records (
    id INTEGER, priority INTEGER, created_ms INTEGER, body BLOB
);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS journal (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    device TEXT NOT NULL,
    boot INTEGER NOT NULL,
    seq INTEGER NOT NULL,
    t_ms INTEGER NOT NULL,
    received_ms INTEGER NOT NULL,
    vals BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS journal_by_device ON journal (device, t_ms);
CREATE TABLE IF NOT EXISTS last_report (
    device TEXT PRIMARY KEY, boot INTEGER NOT NULL, seq INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS closed_windows (
    device TEXT NOT NULL, channel TEXT NOT NULL, until_ms INTEGER NOT NULL,
    PRIMARY KEY (device, channel)
);
CREATE TABLE IF NOT EXISTS raw_cache (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    device TEXT NOT NULL,
    t_ms INTEGER NOT NULL,
    end_ms INTEGER NOT NULL,
    received_ms INTEGER NOT NULL,
    bytes INTEGER NOT NULL,
    body BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS raw_cache_by_device ON raw_cache (device, t_ms);
CREATE TABLE IF NOT EXISTS privacy_counts (
    field TEXT NOT NULL, action TEXT NOT NULL,
    records INTEGER NOT NULL, vals INTEGER NOT NULL,
    PRIMARY KEY (field, action)
);
"""

_V2_QUARANTINE = """
CREATE TABLE IF NOT EXISTS quarantine (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    device TEXT NOT NULL,
    reason TEXT NOT NULL,
    detail TEXT NOT NULL,
    received_ms INTEGER NOT NULL,
    quarantined_ms INTEGER NOT NULL,
    record BLOB NOT NULL
);
"""

MIGRATIONS: tuple[Migration, ...] = (
    Migration(1, "outbox (records, batches, corrupt_records, meta), journal (journal, "
                 "last_report, closed_windows), raw_cache, privacy_counts",
              _V1_UNVERSIONED_TABLES),
    Migration(2, "quarantine: records kept aside because they cannot be summarised",
              _V2_QUARANTINE),
)
LATEST = MIGRATIONS[-1].version


def migrate(db: sqlite3.Connection, path: Path,
            steps: tuple[Migration, ...] = MIGRATIONS) -> int:
    """Bring db to the last of steps (refusing a newer one); return the version it had."""
    _check_order(steps)
    found = user_version(db)
    latest = steps[-1].version
    if found > latest:
        raise SchemaError(
            f"{path}: database schema version {found} is newer than this gateway's "
            f"({latest}): it was written by a newer Tandem release; run that release (or "
            "restore a backup taken before the upgrade). The database was not changed")
    for step in steps:
        if step.version > found:
            _apply(db, path, step)
    if found < latest:
        log.warning("%s: database schema upgraded from version %d to %d", path, found, latest)
    return found


def user_version(db: sqlite3.Connection) -> int:
    """The number of the last step applied to db (0: none)."""
    return int(db.execute("PRAGMA user_version").fetchone()[0])


def _apply(db: sqlite3.Connection, path: Path, step: Migration) -> None:
    """Run one step and record its number, in one write-locked transaction."""
    db.execute("BEGIN IMMEDIATE")
    try:
        # Another process may have applied it while this one waited for the lock.
        if user_version(db) < step.version:
            for statement in statements(step.sql):
                db.execute(statement)
            db.execute(f"PRAGMA user_version = {int(step.version)}")
        db.commit()
    except sqlite3.Error as exc:
        db.rollback()
        raise SchemaError(f"{path}: schema step {step.version} ({step.summary}) failed and "
                          f"was undone: {exc}") from exc
    except BaseException:
        db.rollback()
        raise


def statements(sql: str) -> Iterator[str]:
    """The complete statements of a script, one at a time (a trigger's body stays whole)."""
    pending = ""
    for line in sql.splitlines(keepends=True):
        pending += line
        if sqlite3.complete_statement(pending):
            yield pending.strip()
            pending = ""
    if any(line.strip() and not line.strip().startswith("--") for line in pending.splitlines()):
        raise ValueError(f"incomplete SQL statement at the end of a migration: {pending!r}")


def _check_order(steps: tuple[Migration, ...]) -> None:
    numbers = [step.version for step in steps]
    if numbers != list(range(1, len(steps) + 1)):
        raise ValueError(f"migration steps must be numbered 1, 2, 3, ... in order: {numbers}")
