"""Cloud schema migrations, on SQLite and a real PostgreSQL: from empty, from a pre-migration
database with data in it, down and up again, refusals, and the models agreeing with the revisions.

The pre-migration database is built from tests/fixtures/cloud-schema-v0.*.sql, the DDL that
`create_all` ran before this code existed, with a row in every table.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Engine, MetaData, Table, insert, inspect, select, text
from sqlalchemy.exc import DBAPIError

from tandem.cloud.cli.main import main
from tandem.cloud.db import migrate
from tandem.cloud.db.engine import open_engine
from tandem.cloud.db.models import metadata
from tests.services import postgres_database

FIXTURES = Path(__file__).parents[1] / "fixtures"
T = 1_764_000_000_000

# One row per table of the pre-migration schema (ids are the first a fresh table hands out).
ROWS: dict[str, list[dict[str, Any]]] = {
    "gateways": [{"name": "gw-01", "public_key_pem": "-----BEGIN PUBLIC KEY-----\nAA==\n",
                  "cert_pem": "-----BEGIN CERTIFICATE-----\nAA==\n",
                  "fingerprint": "sha256:" + "ab" * 32, "status": "active", "created_ms": T}],
    "devices": [{"device": "dev-1", "gateway": "gw-01", "first_seen_ms": T,
                 "last_seen_ms": T + 5}],
    "ingested_batches": [{"gateway": "gw-01", "seq": 7, "sent_ms": T, "received_ms": T + 1,
                          "record_count": 3}],
    "users": [{"name": "ops", "role": "admin", "password_hash": "$argon2id$v=19$x",
               "email": None, "active": True, "created_ms": T}],
    "api_tokens": [{"user_id": 1, "name": "ci", "token_hash": "cd" * 32, "note": None,
                    "created_ms": T, "expires_ms": T + 86_400_000, "revoked_ms": None}],
    "audit_log": [{"seq": 1, "at_ms": T, "event": "user.add", "actor": "cli:root",
                   "detail": '{"user":"ops"}', "prev_hash": "0" * 64, "hash": "ef" * 32}],
    "installer_tokens": [{"token_hash": "12" * 32, "gateway": "gw-02", "group": "plant",
                          "created_ms": T, "expires_ms": T + 3_600_000, "used_ms": None}],
    "gateway_groups": [{"gateway": "gw-01", "group": "plant"}],
    "sealed_records": [{"gateway": "gw-01", "device": "dev-1", "of": "s", "name": "temp",
                        "t_ms": T, "received_ms": T + 1, "body": b"\xa2\x01\x02\x03\x00"}],
    "raw_requests": [{"device": "dev-1", "gateway": "gw-01", "t_ms": T, "status": "done",
                      "detail": "", "requested_by": "ops", "created_ms": T, "updated_ms": T + 9,
                      "snippet_id": 1}],
    "raw_snippets": [{"gateway": "gw-01", "device": "dev-1", "t_ms": T, "rate_hz": 1600,
                      "scale": 0.004, "axes": "xyz", "samples": bytes(range(256)),
                      "request_id": 1, "received_ms": T + 8}],
    "policy_releases": [{"group": "plant", "version": 1, "issued_ms": T, "digest": "34" * 32,
                         "envelope": b"\xd2\x84\x43\xa1\x01\x26"}],
    "policy_acks": [{"gateway": "gw-01", "group": "plant", "version": 1, "ok": True,
                     "reason": "", "acked_ms": T + 2}],
    "ts_summaries": [{"gateway": "gw-01", "device": "dev-1", "channel": "temp", "t0_ms": T,
                      "t1_ms": T + 60_000, "n": 60, "min": 20.5, "max": 22.25, "mean": 21.0,
                      "last": 21.5}],
    "ts_events": [{"device": "dev-1", "name": "overheat", "t_ms": T, "gateway": "gw-01",
                   "severity": 2, "values_json": '{"temp":81.5}'}],
}
_AUTOINCREMENT_IDS = {"ingested_batches", "users", "api_tokens", "sealed_records",
                      "raw_requests", "raw_snippets", "policy_releases"}


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """The URL of an empty database: a SQLite file, or a fresh database in a real PostgreSQL."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'cloud.db'}"
        return
    with postgres_database(request.getfixturevalue("postgres_cluster")) as url:
        yield url


@pytest.fixture
def engine(db_url: str) -> Iterator[Engine]:
    """The cloud's own engine (WAL and BEGIN IMMEDIATE on SQLite) on db_url."""
    opened = open_engine(db_url)
    try:
        yield opened
    finally:
        opened.dispose()


def build_pre_migration_database(engine: Engine) -> None:
    """Run the DDL the code before migrations ran, then fill every table."""
    ddl = (FIXTURES / f"cloud-schema-v0.{engine.dialect.name}.sql").read_text()
    if engine.dialect.name == "sqlite":
        with sqlite3.connect(engine.url.database or "") as db:
            db.executescript(ddl)
    else:
        raw = engine.raw_connection()
        try:
            raw.driver_connection.execute(ddl)  # type: ignore[union-attr]
            raw.commit()
        finally:
            raw.close()
    with engine.begin() as conn:
        for name, rows in ROWS.items():
            conn.execute(insert(Table(name, MetaData(), autoload_with=conn)), rows)


def table_rows(engine: Engine) -> dict[str, list[dict[str, Any]]]:
    """Every row of every table of ROWS in ROWS's columns (later revisions may add more)."""
    found = {}
    with engine.connect() as conn:
        for name, expected in ROWS.items():
            table = Table(name, MetaData(), autoload_with=conn)
            wanted = [*expected[0], *(["id"] if name in _AUTOINCREMENT_IDS else [])]
            query = select(*(table.c[column] for column in wanted))
            rows = [dict(row._mapping) for row in conn.execute(query)]
            if name in _AUTOINCREMENT_IDS:
                assert [row.pop("id") for row in rows] == [1]
            found[name] = rows
    return found


def differences(engine: Engine) -> list[Any]:
    """What Alembic's autogenerate finds between the database and the models."""
    with engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        return list(compare_metadata(context, metadata))


def assert_audit_log_refuses_changes(engine: Engine) -> None:
    """The triggers refuse an UPDATE and a DELETE of a row (added if the log is empty)."""
    with engine.begin() as conn:
        if not conn.execute(text("SELECT count(*) FROM audit_log")).scalar():
            conn.execute(insert(Table("audit_log", MetaData(), autoload_with=conn)),
                         ROWS["audit_log"])
    with pytest.raises(DBAPIError, match="append-only"), engine.begin() as conn:
        conn.execute(text("DELETE FROM audit_log"))
    with pytest.raises(DBAPIError, match="append-only"), engine.begin() as conn:
        conn.execute(text("UPDATE audit_log SET actor = 'mallory'"))


def test_upgrade_from_empty_gives_exactly_the_models(engine):
    assert migrate.status(engine).current == ()
    status = migrate.upgrade(engine)
    assert status.up_to_date and status.current == (migrate.head(),)
    assert differences(engine) == [], "a model changed without a revision: see docs/migrations.md"
    with engine.begin() as conn:
        for name, rows in ROWS.items():
            conn.execute(insert(Table(name, MetaData(), autoload_with=conn)), rows)
    assert table_rows(engine) == ROWS
    assert_audit_log_refuses_changes(engine)


def test_a_second_upgrade_changes_nothing(engine):
    migrate.upgrade(engine)
    assert migrate.upgrade(engine).current == (migrate.head(),)


def test_pre_migration_database_is_adopted_and_keeps_every_row(engine):
    build_pre_migration_database(engine)
    before = migrate.status(engine)
    assert before.unversioned_tables and before.current == ()
    assert table_rows(engine) == ROWS

    assert migrate.upgrade(engine).up_to_date
    assert table_rows(engine) == ROWS
    assert differences(engine) == []
    assert_audit_log_refuses_changes(engine)


def test_pre_migration_database_of_an_influxdb_site_gains_the_sql_timeseries_tables(engine):
    build_pre_migration_database(engine)
    with engine.begin() as conn:  # that backend never made them
        conn.execute(text("DROP TABLE ts_summaries"))
        conn.execute(text("DROP TABLE ts_events"))
    assert migrate.upgrade(engine).up_to_date
    assert differences(engine) == []
    rows = table_rows(engine)
    assert rows.pop("ts_summaries") == rows.pop("ts_events") == []
    assert rows == {name: r for name, r in ROWS.items() if not name.startswith("ts_")}


def test_pre_migration_database_that_differs_is_refused_untouched(engine):
    build_pre_migration_database(engine)
    with engine.begin() as conn:
        conn.execute(text("ALTER TABLE devices ADD COLUMN owner VARCHAR(64)"))
    with pytest.raises(migrate.SchemaError, match=r"add_column devices\.owner|devices\.owner"):
        migrate.upgrade(engine)
    assert not inspect(engine).has_table("alembic_version")
    assert migrate.status(engine).unversioned_tables
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM devices")).scalar() == 1


def test_database_of_a_newer_release_is_refused(engine):
    migrate.upgrade(engine)
    with engine.begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = '9999'"))
    with pytest.raises(migrate.SchemaError, match=r"9999.*newer Tandem release"):
        migrate.upgrade(engine)
    with pytest.raises(migrate.SchemaError, match="9999"):
        migrate.status(engine)


def test_every_revision_goes_down_and_up_again(engine):
    chain = [script.revision for script in reversed(list(migrate.scripts().walk_revisions()))]
    for revision in chain:
        assert migrate.upgrade(engine, revision).current == (revision,)
    for previous in [*reversed(chain[:-1]), "base"]:
        migrate.downgrade(engine, previous)
        assert migrate.status(engine).current == (() if previous == "base" else (previous,))
    assert inspect(engine).get_table_names() == ["alembic_version"]
    migrate.upgrade(engine)
    assert differences(engine) == []
    assert_audit_log_refuses_changes(engine)


def test_concurrent_starts_apply_each_revision_once(db_url):
    """Server workers starting together all upgrade; the lock makes them take turns."""
    engines = [open_engine(db_url) for _ in range(3)]
    errors: list[BaseException] = []

    def start(engine: Engine) -> None:
        try:
            migrate.upgrade(engine)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=start, args=(e,)) for e in engines]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=120)
        assert errors == []
        assert migrate.status(engines[0]).up_to_date
        assert differences(engines[0]) == []
    finally:
        for opened in engines:
            opened.dispose()


def test_history_lists_the_baseline_and_marks_the_head():
    lines = migrate.history()
    assert lines[0].startswith(f"{migrate.head()} (head)")
    assert lines[-1].startswith(migrate.BASELINE)


# -- the command line ------------------------------------------------------------------------

def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize("argv", [["db"], ["db", "upgrade"], ["db", "current"],
                                  ["db", "history"], ["db", "revision"]])
def test_every_db_command_has_help(capsys, argv):
    with pytest.raises(SystemExit) as exited:
        main([*argv, "--help"])
    assert exited.value.code == 0
    assert "usage: tandem-cloud db" in capsys.readouterr().out


def test_db_commands_adopt_and_report_a_pre_migration_database(capsys, engine, db_url,
                                                                 tmp_path):
    build_pre_migration_database(engine)
    config = tmp_path / "cloud.toml"
    config.write_text(f'version = 1\nmode = "development"\ndata_dir = "{tmp_path / "data"}"\n'
                      f'[database]\nurl = "{db_url}"\n')
    code, out, _ = run(capsys, "db", "current", "--check", "--config", str(config))
    assert code == 1 and "made before migrations" in out
    code, out, _ = run(capsys, "db", "upgrade", "--config", str(config))
    assert code == 0 and out.rstrip().endswith(f"at revision {migrate.head()} (head)")
    code, out, _ = run(capsys, "db", "current", "--check", "--config", str(config))
    assert code == 0 and f"at revision {migrate.head()} (head)" in out
    code, out, _ = run(capsys, "db", "history")
    assert code == 0 and f"{migrate.BASELINE}" in out
    assert table_rows(engine) == ROWS


def test_serve_refuses_a_database_of_a_newer_release_clearly(capsys, engine, db_url, tmp_path):
    migrate.upgrade(engine)
    with engine.begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = '9999'"))
    config = tmp_path / "cloud.toml"
    config.write_text(f'version = 1\nmode = "development"\ndata_dir = "{tmp_path / "data"}"\n'
                      f'[database]\nurl = "{db_url}"\n')
    code, _, err = run(capsys, "serve", "--insecure-http", "--config", str(config))
    assert code == 1
    assert "error: the database is at schema revision 9999" in err
