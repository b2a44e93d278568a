"""Real storage servers for tests: one influxd and one PostgreSQL cluster per session.

Import the fixtures into a conftest (`from tests.services import influx_server,
postgres_cluster`); each starts lazily, the first time a test asks for it, and
is stopped with its temporary directory removed at the end of the session,
also after failures (the starters live in `tools/services.py`, shared with
the benchmark). Tests get a fresh database each from `influx_database` /
`postgres_database`, dropped afterwards, so they never see each other's data.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator

import httpx
import pytest

from tandem.tools.services import (
    InfluxServer,
    PostgresCluster,
    RedisServer,
    influxd,
    postgres,
    redis,
    scratch_database,
)


@pytest.fixture(scope="session")
def influx_server() -> Iterator[InfluxServer]:
    """A running influxd for the session."""
    with influxd() as server:
        yield server


@pytest.fixture(scope="session")
def postgres_cluster() -> Iterator[PostgresCluster]:
    """A running PostgreSQL cluster for the session."""
    with postgres() as cluster:
        yield cluster


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    """A running redis-server for the session."""
    with redis() as server:
        yield server


def unique_name(prefix: str = "test") -> str:
    """A database name no other test uses."""
    return f"{prefix}_{uuid.uuid4().hex[:16]}"


@contextlib.contextmanager
def influx_database(server: InfluxServer) -> Iterator[str]:
    """The name of a database that is dropped afterwards (the store creates it on start)."""
    name = unique_name()
    try:
        yield name
    finally:
        with httpx.Client(base_url=server.url, timeout=30) as http:
            http.post("/query", params={"q": f'DROP DATABASE "{name}"'}).raise_for_status()


def postgres_database(cluster: PostgresCluster) -> contextlib.AbstractContextManager[str]:
    """The SQLAlchemy URL of a new empty database, dropped afterwards."""
    return scratch_database(cluster, unique_name())
