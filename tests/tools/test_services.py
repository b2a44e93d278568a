"""Throwaway storage servers: they answer while the block runs and leave nothing behind."""

from __future__ import annotations

import httpx
import pytest
from sqlalchemy import create_engine, text

from tandem.tools.services import influxd, postgres


class Boom(Exception):
    pass


def gone(pid: int) -> bool:
    """No such process, or only a zombie (a daemon's parent is init, which reaps it later)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] == "Z"
    except FileNotFoundError:
        return True


@pytest.mark.timeout(60)
def test_influxd_answers_on_loopback_and_is_stopped_and_removed_after_a_failure():
    with pytest.raises(Boom), influxd() as server:
        assert server.url.startswith("http://127.0.0.1:")
        assert httpx.get(f"{server.url}/ping").status_code == 204
        pid, root = server.child.proc.pid, server.root
        raise Boom
    assert server.child.proc.poll() is not None and gone(pid)
    assert not root.exists()


@pytest.mark.timeout(120)
def test_postgres_accepts_connections_and_is_stopped_and_removed_after_a_failure():
    with pytest.raises(Boom), postgres() as cluster:
        engine = create_engine(cluster.url())
        with engine.connect() as conn:
            assert conn.execute(text("SHOW server_version")).scalar().startswith("15")
        engine.dispose()
        pid = int((cluster.root / "data" / "postmaster.pid").read_text().split()[0])
        raise Boom
    assert gone(pid)
    assert not cluster.root.exists()
