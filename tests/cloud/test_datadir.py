"""The data directory is private (0700, files 0600); development mode makes its own secret."""

from __future__ import annotations

import re
import socket
import stat
import sys
from pathlib import Path

import pytest
from flask import Flask
from flask.sessions import SecureCookieSessionInterface

from tandem.cloud import close_app, create_app
from tandem.cloud.access import accounts
from tandem.cloud.access.auth import SESSION_USER
from tandem.cloud.config import DEFAULT_SECRET
from tandem.cloud.db import engine as database
from tandem.tools.procs import Child

REPO = Path(__file__).resolve().parents[2]


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def development(data: Path) -> Flask:
    return create_app({"version": 1, "mode": "development", "data_dir": str(data)})


def test_data_dir_and_every_file_the_cloud_creates_are_private(tmp_path):
    data = tmp_path / "data"
    app = development(data)
    try:
        with database.sessions(app).begin() as session:  # a write: -wal and -shm exist now
            accounts.add_user(session, "someone", "viewer", None, 1)
        files = [data / "cloud.db", data / "cloud.db-wal", data / "cloud.db-shm",
                 data / "secret_key", data / "keys" / "at-rest.keys"]
        assert all(path.exists() for path in files)
        assert {str(p): mode(p) for p in files} == {str(p): 0o600 for p in files}
        assert (mode(data), mode(data / "keys")) == (0o700, 0o700)
    finally:
        close_app(app)


def test_an_older_installation_is_tightened_on_start(tmp_path, caplog):
    data = tmp_path / "data"
    data.mkdir(mode=0o755)
    data.chmod(0o755)
    (data / "cloud.db").touch(mode=0o644)
    (data / "cloud.db").chmod(0o644)
    close_app(development(data))
    assert (mode(data), mode(data / "cloud.db")) == (0o700, 0o600)
    assert "was mode 755; made it 700" in caplog.text


def test_development_mode_signs_sessions_with_its_own_secret_not_the_published_one(tmp_path):
    first = development(tmp_path / "a")
    try:
        secret = first.secret_key
        assert secret != DEFAULT_SECRET and len(str(secret)) >= 32
        with database.sessions(first).begin() as session:
            admin = accounts.add_user(session, "root", "admin", None, 1)
        forger = Flask("forger")
        forger.secret_key = DEFAULT_SECRET
        serializer = SecureCookieSessionInterface().get_signing_serializer(forger)
        assert serializer is not None
        cookie = serializer.dumps({SESSION_USER: admin.id})
        client = first.test_client()
        client.set_cookie("tandem_session", cookie)
        assert client.get("/api/v1/summaries").status_code == 401
    finally:
        close_app(first)
    again, other = development(tmp_path / "a"), development(tmp_path / "b")
    assert again.secret_key == secret  # kept: sessions survive a restart
    assert other.secret_key != secret  # per installation
    close_app(again)
    close_app(other)


@pytest.mark.timeout(60)
def test_development_mode_listens_on_loopback_only_and_says_so(tmp_path):
    config = tmp_path / "cloud.toml"
    config.write_text('version = 1\nmode = "development"\ndata_dir = "data"\n'
                      '[server]\nhost = "0.0.0.0"\nport = 0\n')
    child = Child("cloud", [sys.executable, "-m", "tandem.cloud.cli.main", "serve",
                            "--insecure-http", "--config", str(config)], cwd=REPO)
    try:
        port = int(child.wait_for(r"listening on http://127\.0\.0\.1:(\d+)$", 60).group(1))
        assert any(re.search(r"WARNING .*DEVELOPMENT MODE.*127\.0\.0\.1 only "
                             r"\(server\.host = '0\.0\.0\.0' ignored\)", line)
                   for line in child.lines)
        socket.create_connection(("127.0.0.1", port), timeout=5).close()
        with pytest.raises(ConnectionRefusedError):  # another loopback address: not bound
            socket.create_connection(("127.0.0.2", port), timeout=5)
    finally:
        assert child.stop() == 0
