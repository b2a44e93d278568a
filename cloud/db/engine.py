"""The relational database resource: one engine and session factory per app."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, cast

from flask import Flask, current_app
from sqlalchemy import Connection, Engine, create_engine, event, make_url, text
from sqlalchemy.orm import Session, sessionmaker

from tandem.cloud import datadir
from tandem.cloud.config import CloudConfig
from tandem.cloud.db import migrate
from tandem.cloud.keys import kms

_EXTENSION = "tandem.database"
SQLITE_BUSY_TIMEOUT_MS = 10_000
# Execution option of a connection that only reads: SQLite begins it deferred (see below).
READ_ONLY = "tandem_read_only"


def open_engine(url: str) -> Engine:
    """Create an engine for url; SQLite gets WAL, a busy timeout and write-locking BEGINs."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite":
        return create_engine(url, pool_pre_ping=True)
    if parsed.database and parsed.database != ":memory:":
        datadir.private_database(Path(parsed.database))
    engine = create_engine(url, connect_args={"check_same_thread": False})
    event.listen(engine, "connect", _sqlite_connect)
    event.listen(engine, "begin", _sqlite_begin)
    return engine


def _sqlite_connect(dbapi_connection: Any, _record: Any) -> None:
    # Let SQLAlchemy, not the sqlite3 module, decide when transactions begin.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def _sqlite_begin(conn: Any) -> None:
    # Take the write lock up front: a deferred transaction that reads the ledger and
    # then writes fails with "database is locked" when another writer got in between.
    # A read-only connection begins deferred, so a long read (an export) blocks no writer.
    read_only = conn.get_execution_options().get(READ_ONLY, False)
    conn.exec_driver_sql("BEGIN" if read_only else "BEGIN IMMEDIATE")


def connect(config: CloudConfig) -> Engine:
    """The engine of config's database, with its key provider for encrypted columns."""
    datadir.private_dir(config.data_dir)  # before the key file and database are made in it
    provider = kms.open_provider(config)
    engine = open_engine(config.database.url)
    kms.attach(engine, provider)
    return engine


def create_schema(engine: Engine) -> None:
    """Upgrade the schema to the code's revision (see cloud/db/migrate.py; raises SchemaError)."""
    migrate.upgrade(engine)


def init_app(app: Flask, config: CloudConfig) -> None:
    """Open the database named in config and make it available to requests."""
    engine = connect(config)
    create_schema(engine)
    app.extensions[_EXTENSION] = sessionmaker(engine, expire_on_commit=False)


def sessions(app: Flask | None = None) -> sessionmaker[Session]:
    """The session factory of app (default: the current app)."""
    target = app if app is not None else current_app
    return cast("sessionmaker[Session]", target.extensions[_EXTENSION])


def engine(app: Flask | None = None) -> Engine:
    """The engine of app (default: the current app)."""
    bind = sessions(app).kw["bind"]
    return cast(Engine, bind)


@contextmanager
def read_session(app: Flask | None = None) -> Iterator[Session]:
    """An ORM session that only reads: on SQLite it begins deferred, taking no write lock.

    Lookups on every request (tokens, sessions, gateway keys) use it, so they
    neither wait for nor hold up a writer such as ingest.
    """
    with sessions(app)() as session:
        session.connection(execution_options={READ_ONLY: True})
        yield session


def reading(engine: Engine) -> Connection:
    """A connection for reads only (use as a context manager)."""
    return engine.connect().execution_options(**{READ_ONLY: True})


def check(app: Flask | None = None) -> None:
    """Raise if the database does not answer."""
    with engine(app).connect() as conn:
        conn.execute(text("SELECT 1"))


def close(app: Flask) -> None:
    """Release the app's database connections."""
    engine(app).dispose()


@contextmanager
def cli_engine(config: CloudConfig) -> Iterator[Engine]:
    """An engine for one CLI command: connect, make sure the schema exists, dispose after."""
    engine = connect(config)  # creates the data key file on first use too
    try:
        create_schema(engine)
        yield engine
    finally:
        engine.dispose()


@contextmanager
def cli_session(config: CloudConfig) -> Iterator[Session]:
    """A session for one CLI command, on an engine of its own (see cli_engine)."""
    with cli_engine(config) as engine, Session(engine) as session:
        yield session
