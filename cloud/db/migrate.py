"""Bring the cloud's database to the code's schema revision with Alembic, adopting older ones.

Every start (`create_schema`, so `serve`, every worker and every CLI command)
upgrades to head: zero set-up on SQLite, and an operator may run
`tandem-cloud db upgrade` before a rollout instead. The upgrade runs in one
transaction that holds the database's write lock (SQLite's BEGIN IMMEDIATE,
a PostgreSQL advisory lock), so concurrent starts apply each revision once.

A database made by `create_all` before migrations existed has tables but no
`alembic_version`; when its tables match revision 0001's frozen schema it is
stamped 0001 and upgraded, otherwise it is refused, untouched. A database at
a revision this code does not know (written by a newer release) is refused.
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util import CommandError
from sqlalchemy import Connection, Engine, MetaData, create_engine, inspect, text

log = logging.getLogger(__name__)

MIGRATIONS_DIR = Path(__file__).with_name("migrations")
BASELINE = "0001"  # the schema as create_all made it before migrations
# Key of the PostgreSQL advisory lock that serialises concurrent upgrades ("tandem").
_PG_LOCK_KEY = 0x74616E64656D


class SchemaError(Exception):
    """The database's schema cannot be brought to this code's revision; nothing was changed."""


@dataclass(frozen=True, slots=True)
class Status:
    """Where a database stands: its revisions, the code's head, and whether it predates Alembic."""

    current: tuple[str, ...]
    head: str
    unversioned_tables: bool  # tables present but no alembic_version: made before migrations

    @property
    def up_to_date(self) -> bool:
        """True when the database is at the code's head."""
        return self.current == (self.head,)


def alembic_config(connection: Connection | None = None) -> Config:
    """Alembic's configuration in code (no alembic.ini): the packaged scripts, our connection."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    # Revision files are importable names (v0002_add_owner.py), numbered in order.
    config.set_main_option("file_template", "v%%(rev)s_%%(slug)s")
    config.attributes["connection"] = connection
    return config


def scripts() -> ScriptDirectory:
    """The revisions shipped with the code."""
    return ScriptDirectory.from_config(alembic_config())


def head() -> str:
    """The newest revision the code knows (one line of history, so one head)."""
    heads = scripts().get_heads()
    if len(heads) != 1:
        raise SchemaError(f"the migrations have {len(heads)} heads ({', '.join(heads)}); "
                          "merge them into one before release")
    return heads[0]


def status(engine: Engine) -> Status:
    """Read where the database stands, changing nothing."""
    with engine.connect() as conn:
        return _status(conn)


def upgrade(engine: Engine, target: str = "head") -> Status:
    """Upgrade (adopting a pre-migration database first) to target; return the new status."""
    with engine.begin() as conn:
        _lock(conn)
        before = _status(conn)
        if before.unversioned_tables:
            _adopt(conn)
        command.upgrade(alembic_config(conn), target)
        after = _status(conn)
    if before.current != after.current:
        log.warning("database schema upgraded from %s to %s",
                    _label(before), ", ".join(after.current))
    return after


def downgrade(engine: Engine, target: str) -> Status:
    """Downgrade to target ("base" empties the database of every table migrations made)."""
    with engine.begin() as conn:
        _lock(conn)
        _status(conn)
        command.downgrade(alembic_config(conn), target)
        return _status(conn)


def history() -> list[str]:
    """One line per revision, newest first: id, what it does, and which one is head."""
    tip = head()
    return [f"{script.revision}{' (head)' if script.revision == tip else ''}  "
            f"{script.doc}" for script in scripts().walk_revisions()]


def new_revision(message: str, autogenerate: bool = False) -> Path:
    """Write the next numbered revision file (a developer's tool: it writes into the source).

    With autogenerate its body is what the models have that the migrations
    lack, found by upgrading a scratch SQLite database to head and comparing.
    """
    number = f"{int(head()) + 1:04d}"
    if not autogenerate:
        return _written(command.revision(alembic_config(), message=message, rev_id=number))
    with tempfile.TemporaryDirectory() as scratch:
        engine = create_engine(f"sqlite:///{scratch}/schema.sqlite3")
        try:
            upgrade(engine)
            with engine.begin() as conn:
                return _written(command.revision(alembic_config(conn), message=message,
                                                 rev_id=number, autogenerate=True))
        finally:
            engine.dispose()


def _written(result: Any) -> Path:
    scripts_written = result if isinstance(result, list) else [result]
    if not scripts_written or scripts_written[0] is None:
        raise SchemaError("alembic wrote no revision file")
    return Path(scripts_written[0].path)


def _status(conn: Connection) -> Status:
    current = tuple(MigrationContext.configure(conn).get_current_heads())
    _refuse_unknown(current)
    unversioned = not current and not inspect(conn).has_table("alembic_version") and any(
        inspect(conn).has_table(name) for name in _baseline_schema().tables)
    return Status(current=current, head=head(), unversioned_tables=unversioned)


def _refuse_unknown(current: Sequence[str]) -> None:
    known = scripts()
    for revision in current:
        try:
            known.get_revision(revision)
        except CommandError:
            raise SchemaError(
                f"the database is at schema revision {revision}, which this code does not "
                f"know (its newest is {head()}): it was upgraded by a newer Tandem release; "
                "run that release (or restore a backup taken before the upgrade)") from None


def _baseline_schema() -> MetaData:
    """Revision 0001's frozen tables."""
    schema: MetaData = scripts().get_revision(BASELINE).module.SCHEMA
    return schema


def _lock(conn: Connection) -> None:
    # SQLite: the engine's BEGIN IMMEDIATE already holds the write lock.
    if conn.dialect.name == "postgresql":
        conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _PG_LOCK_KEY})


def _adopt(conn: Connection) -> None:
    """Stamp a pre-migration database as the baseline once its tables are checked."""
    baseline = scripts().get_revision(BASELINE).module
    schema = _baseline_schema()
    # The SQL time-series backend made its two tables only when it was chosen.
    missing = [name for name in baseline.TIMESERIES_TABLES if not inspect(conn).has_table(name)]
    context = MigrationContext.configure(conn, opts={"compare_type": True})
    problems = [_describe(diff) for diff in compare_metadata(context, schema)
                if not _tolerated(diff, schema, missing)]
    if problems:
        raise SchemaError(
            "the database has tables but no migration history (alembic_version), and they "
            f"differ from the schema before migrations (revision {BASELINE}): "
            f"{'; '.join(problems)}. It was not changed; fix it by hand or restore a backup")
    if missing:
        schema.create_all(conn, tables=[schema.tables[name] for name in missing],
                          checkfirst=False)
    command.stamp(alembic_config(conn), BASELINE)
    log.warning("database made before schema migrations adopted as revision %s%s", BASELINE,
                f" (created {', '.join(missing)})" if missing else "")


def _tolerated(diff: Any, schema: MetaData, missing: Sequence[str]) -> bool:
    """Differences adoption may ignore: tables that are not ours, time-series tables it adds."""
    if not isinstance(diff, tuple):
        return False
    kind, subject = diff[0], diff[1]
    if kind == "remove_table":
        return subject.name not in schema.tables
    if kind == "add_table":
        return subject.name in missing
    if kind == "add_index":
        return subject.table.name in missing
    return False


def _describe(diff: Any) -> str:
    """A short human account of one autogenerate difference."""
    if isinstance(diff, list):
        return "; ".join(_describe(item) for item in diff)
    kind = diff[0]
    if kind.startswith("modify_"):  # (kind, schema, table, column, info, old, new)
        return f"{kind} {diff[2]}.{diff[3]} ({diff[5]!r} in the database, {diff[6]!r} expected)"
    subject = diff[-1] if kind in ("add_column", "remove_column") else diff[1]
    table = getattr(subject, "table", None)
    name = getattr(subject, "name", subject)
    return f"{kind} {table.name + '.' if table is not None else ''}{name}"


def _label(status: Status) -> str:
    if status.unversioned_tables:
        return "an unversioned (pre-migration) schema"
    return ", ".join(status.current) if status.current else "an empty database"
