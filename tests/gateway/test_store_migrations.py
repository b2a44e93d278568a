"""The gateway database's versioned schema: a database written before versioning opens and loses
nothing, a newer one is refused untouched, and every step is all-or-nothing and applied once.

tests/fixtures/gateway-schema-v0.sql is a dump of a database the code before versioning filled
through its real components: records waiting, a sealed and a dead batch, journal rows, raw
snippets, privacy counts, the daily budget.
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from pathlib import Path
from typing import Any

import pytest

from tandem.gateway.cli.main import main
from tandem.gateway.cloudlink.budget import DailyBudget
from tandem.gateway.config import RawCacheSection
from tandem.gateway.nodes.rawcache import RawCache
from tandem.gateway.pipeline.journal import Journal
from tandem.gateway.privacy.gate import read_counts
from tandem.gateway.store.database import GatewayDatabase
from tandem.gateway.store.migrations import (
    LATEST,
    MIGRATIONS,
    Migration,
    SchemaError,
    migrate,
    statements,
    user_version,
)
from tandem.gateway.store.outbox import Outbox, Priority
from tandem.wire.batch import Summary

FIXTURE = Path(__file__).parents[1] / "fixtures" / "gateway-schema-v0.sql"
T = 1_764_000_000_000
ADD_COLUMN = Migration(LATEST + 1, "records get a source",
                       "ALTER TABLE records ADD COLUMN source TEXT NOT NULL DEFAULT 'node';")


def pre_versioning_database(tmp_path: Path) -> Path:
    """A database file exactly as the code before versioning left it (user_version 0)."""
    path = tmp_path / "gateway.sqlite3"
    with sqlite3.connect(path) as db:
        db.executescript(FIXTURE.read_text())
        assert user_version(db) == 0
    return path


def contents(path: Path) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every table (sqlite_sequence included), in a stable order."""
    with sqlite3.connect(path) as db:
        tables = [name for (name,) in db.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")]
        return {name: sorted(db.execute(f'SELECT * FROM "{name}"').fetchall(), key=repr)
                for name in tables}


def columns(path: Path) -> dict[str, list[tuple[Any, ...]]]:
    """Each table's columns (name, type, not null, default, key) and each index's columns."""
    with sqlite3.connect(path) as db:
        names = db.execute("SELECT type, name FROM sqlite_master WHERE name NOT LIKE 'sqlite_%' "
                           "ORDER BY name").fetchall()
        return {name: db.execute(f'PRAGMA {kind}_info("{name}")').fetchall()
                for kind, name in names}


# Tables that later schema steps added (version 2: quarantine).
ADDED_AFTER_VERSIONING = {"quarantine"}


def test_database_written_before_versioning_opens_and_loses_nothing(tmp_path):
    path = pre_versioning_database(tmp_path)
    before = contents(path)
    assert all(before[name] for name in before), "the fixture has rows in every table"

    database = GatewayDatabase(path)
    try:
        assert database.call_sync(lambda: user_version(database.connection)) == LATEST
        after = contents(path)
        assert {name: rows for name, rows in after.items() if name in before} == before
        assert set(after) - set(before) == ADDED_AFTER_VERSIONING
        outbox = Outbox(database)
        assert database.call_sync(outbox.depth_sync) == (3, 1)  # batch 1 was set aside
        pending = database.call_sync(outbox.seal_or_pending_sync, 10, _no_new_batch, T)
        assert (pending.seq, pending.envelope) == (2, b"\xd2\x84envelope-2-\x02\x01")
        recovery = Journal(database, outbox).recover()
        assert [j.row_id for j in recovery.rows] == [2, 3, 4, 5, 6]
        assert recovery.last == {"dev-1": (3, 5), "dev-2": (1, 9)}
        assert recovery.closed == {("dev-1", "temp"): T + 2000, ("dev-1", "hum"): T + 2000}
        assert recovery.filed_through == 2
        cache = RawCache(database, RawCacheSection(), clock_ms=lambda: T)
        snippet = database.call_sync(cache.find_sync, "dev-1", T)
        assert snippet is not None and snippet.samples == bytes(range(256)) * 3
        counts = database.call_sync(lambda: read_counts(database.connection))
        assert ("temp", "clear", 6, 21) in counts
        budget = DailyBudget(database, 1_000_000)
        assert (budget.day, budget.used) == (20416, 12345)
        # New rows continue after the old ones (AUTOINCREMENT state kept).
        asyncio.run(outbox.put([Summary("dev-1", "temp", T, T + 1, 1, 1, 1, 1, 1)],
                               Priority.SUMMARY))
        ids = database.call_sync(lambda: database.connection.execute(
            "SELECT max(id) FROM records").fetchone()[0])
        assert ids == 8
    finally:
        database.close()


def _no_new_batch(seq: int, records: Any) -> bytes:
    raise AssertionError("the pending sealed batch must be resent, not a new one sealed")


def test_new_database_has_exactly_the_tables_of_before_versioning(tmp_path):
    old = pre_versioning_database(tmp_path)
    GatewayDatabase(tmp_path / "new.sqlite3").close()
    new = columns(tmp_path / "new.sqlite3")
    assert {name: cols for name, cols in new.items() if name not in ADDED_AFTER_VERSIONING} \
        == columns(old)


def test_database_of_a_newer_release_is_refused_untouched(tmp_path):
    path = pre_versioning_database(tmp_path)
    with sqlite3.connect(path) as db:
        db.execute(f"PRAGMA user_version = {LATEST + 1}")
    before = contents(path)
    with pytest.raises(SchemaError, match=rf"version {LATEST + 1} is newer than this gateway's "
                                          rf"\({LATEST}\).*newer Tandem release"):
        GatewayDatabase(path)
    assert contents(path) == before
    with sqlite3.connect(path) as db:
        assert user_version(db) == LATEST + 1
    assert not [t for t in threading.enumerate() if t.name.startswith("gateway-db")]


def test_a_later_step_adds_a_column_and_keeps_every_row(tmp_path):
    path = pre_versioning_database(tmp_path)
    before = contents(path)
    with sqlite3.connect(path) as db:
        assert migrate(db, path, (*MIGRATIONS, ADD_COLUMN)) == 0
        assert user_version(db) == ADD_COLUMN.version
    after = contents(path)
    assert after["records"] == [(*row, "node") for row in before["records"]]
    assert {k: v for k, v in after.items() if k in before and k != "records"} == \
        {k: v for k, v in before.items() if k != "records"}


def test_a_failing_step_is_undone_whole(tmp_path):
    path = pre_versioning_database(tmp_path)
    before = columns(path)
    broken = Migration(LATEST + 1, "half a change",
                       "ALTER TABLE records ADD COLUMN source TEXT;\n"
                       "INSERT INTO no_such_table VALUES (1);")
    with sqlite3.connect(path) as db:
        with pytest.raises(SchemaError, match=rf"step {LATEST + 1} \(half a change\) failed "
                                              "and was undone: no such table"):
            migrate(db, path, (*MIGRATIONS, broken))
        assert user_version(db) == LATEST  # the steps before it stay applied
    assert {k: v for k, v in columns(path).items() if k in before} == before


def test_processes_opening_at_once_apply_each_step_once(tmp_path):
    path = pre_versioning_database(tmp_path)
    errors: list[BaseException] = []

    def open_and_migrate() -> None:
        try:
            with sqlite3.connect(path, timeout=60, isolation_level="DEFERRED") as db:
                migrate(db, path, (*MIGRATIONS, ADD_COLUMN))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=open_and_migrate) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert errors == []  # a second ADD COLUMN would have failed with "duplicate column"
    with sqlite3.connect(path) as db:
        assert user_version(db) == ADD_COLUMN.version


def test_steps_are_split_into_whole_statements():
    sql = ("CREATE TABLE a (x);\n-- why\nCREATE TRIGGER t AFTER INSERT ON a BEGIN\n"
           "  INSERT INTO a VALUES (1);\nEND;\n")
    assert list(statements(sql)) == [
        "CREATE TABLE a (x);",
        "-- why\nCREATE TRIGGER t AFTER INSERT ON a BEGIN\n  INSERT INTO a VALUES (1);\nEND;"]
    with pytest.raises(ValueError, match="incomplete"):
        list(statements("CREATE TABLE b (x)"))


def test_steps_must_be_numbered_in_order(tmp_path):
    with sqlite3.connect(tmp_path / "x.sqlite3") as db, pytest.raises(ValueError,
                                                                     match="numbered"):
        migrate(db, tmp_path / "x.sqlite3", (MIGRATIONS[0], Migration(3, "gap", "")))


def test_gateway_command_reports_a_newer_database_clearly(tmp_path, capsys):
    config = tmp_path / "gw.toml"
    config.write_text('version = 1\n[gateway]\nid = "gw-01"\ndata_dir = "data"\n[identity]\n'
                      'cert = "c.pem"\nkey = "k.pem"\nca = "ca.pem"\n')
    (tmp_path / "data").mkdir()
    path = pre_versioning_database(tmp_path / "data")
    assert main(["outbox", "--config", str(config)]) == 0
    assert "3 records waiting, 1 batches" in capsys.readouterr().out
    with sqlite3.connect(path) as db:
        db.execute(f"PRAGMA user_version = {LATEST + 1}")
    assert main(["outbox", "--config", str(config)]) == 1
    assert "newer than this gateway's" in capsys.readouterr().err
