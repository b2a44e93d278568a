"""Insert-or-update statements for the SQL dialects the cloud supports."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from sqlalchemy import Connection, Table
from sqlalchemy.dialects import postgresql, sqlite

# Both dialects spell ON CONFLICT the same way; the dict is the seam for another one.
_INSERTS: dict[str, Callable[[Table], Any]] = {
    "sqlite": sqlite.insert,
    "postgresql": postgresql.insert,
}


def upsert_statement(conn: Connection, table: Table, key: Sequence[str],
                     update: Sequence[str], where: Any = None) -> Any:
    """INSERT into table; on a key conflict overwrite the update columns (where holds)."""
    stmt = _insert(conn)(table)
    return stmt.on_conflict_do_update(
        index_elements=list(key), set_={name: stmt.excluded[name] for name in update},
        where=where)


def insert_missing_statement(conn: Connection, table: Table, key: Sequence[str]) -> Any:
    """INSERT into table; a row whose key exists is left as it is."""
    return _insert(conn)(table).on_conflict_do_nothing(index_elements=list(key))


def dialect_insert(conn: Connection, table: Table) -> Any:
    """The dialect's INSERT into table, for an ON CONFLICT clause of the caller's own."""
    return _insert(conn)(table)


def _insert(conn: Connection) -> Callable[[Table], Any]:
    try:
        return _INSERTS[conn.dialect.name]
    except KeyError:
        raise RuntimeError(f"no upsert for database dialect {conn.dialect.name!r}") from None
