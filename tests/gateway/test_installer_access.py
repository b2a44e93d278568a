"""The installer page's access control: password file, sessions, CSRF, login throttle.

The handlers run in aiohttp's test server (plain HTTP: TLS is exercised by the
end-to-end test) in front of a stand-in gateway that has only what login needs.
"""

from __future__ import annotations

import asyncio
import re
import stat
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from tandem.gateway.installer.config import InstallerSection
from tandem.gateway.installer.password import (
    PASSWORD_FILE,
    Credentials,
    PasswordError,
    set_password,
)
from tandem.gateway.installer.server import InstallerServer
from tandem.gateway.installer.sessions import SessionTable
from tandem.gateway.installer.throttle import LoginThrottle
from tandem.gateway.pipeline.livevalues import LiveValues
from tests.gateway.installerkit import PASSWORD, Browser
from tests.gateway.installerkit import csrf_token as _csrf


class Clock:
    """A hand-driven monotonic clock."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_password_file_is_private_and_holds_no_password(tmp_path: Path) -> None:
    path = set_password(tmp_path, PASSWORD)
    assert path == tmp_path / PASSWORD_FILE
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert PASSWORD not in path.read_text() and '"scheme": "scrypt"' in path.read_text()
    credentials = Credentials(tmp_path)
    assert credentials.check(PASSWORD)
    assert not credentials.check(PASSWORD + "x")


def test_short_password_refused(tmp_path: Path) -> None:
    with pytest.raises(PasswordError, match="at least 10"):
        set_password(tmp_path, "short")
    assert not (tmp_path / PASSWORD_FILE).exists()


def test_one_time_code_logged_once_and_spent_by_one_login(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    credentials = Credentials(tmp_path)
    assert not credentials.check("")  # no code before announce()
    credentials.announce()
    code = re.search(r"one-time login code: (\d{8})", caplog.text)
    assert code is not None
    assert not credentials.check("00000000" if code[1] != "00000000" else "11111111")
    assert credentials.check(code[1])
    assert not credentials.check(code[1])  # spent


def test_no_code_once_a_password_is_set(tmp_path: Path,
                                        caplog: pytest.LogCaptureFixture) -> None:
    set_password(tmp_path, PASSWORD)
    Credentials(tmp_path).announce()
    assert "one-time" not in caplog.text


def test_throttle_backs_off_exponentially_and_success_clears() -> None:
    clock = Clock()
    throttle = LoginThrottle(free=3, max_wait_s=10, clock=clock)
    for _ in range(3):
        assert throttle.wait_s("a") == 0
        throttle.failed("a")
    assert throttle.wait_s("a") == 1.0  # 2^0 after the free attempts
    throttle.failed("a")
    assert throttle.wait_s("a") == 2.0
    for _ in range(10):
        throttle.failed("a")
    assert throttle.wait_s("a") == 10.0  # capped
    assert throttle.wait_s("b") == 0  # per address
    clock.now += 10
    assert throttle.wait_s("a") == 0
    throttle.succeeded("a")
    throttle.failed("a")
    assert throttle.wait_s("a") == 0


def test_throttle_table_is_bounded() -> None:
    throttle = LoginThrottle(max_addresses=100)
    for i in range(1000):
        throttle.failed(f"10.0.{i // 256}.{i % 256}")
    assert len(throttle) == 100


def test_sessions_expire_and_are_bounded() -> None:
    clock = Clock()
    table = SessionTable(ttl_s=60, max_sessions=10, clock=clock)
    first = table.new()
    assert table.get(first.id) is first
    clock.now += 61
    assert table.get(first.id) is None
    for _ in range(50):
        table.new()
    assert len(table) == 10
    assert table.get(None) is None and table.get("nope") is None


# -- the handlers ---------------------------------------------------------------


def _gateway(data_dir: Path) -> Any:
    config = SimpleNamespace(gateway=SimpleNamespace(id="gw-test", data_dir=data_dir),
                             rules=SimpleNamespace(file=None))
    return SimpleNamespace(config=config)


async def _client(tmp_path: Path) -> tuple[Browser, InstallerServer]:
    set_password(tmp_path, PASSWORD)
    server = InstallerServer(InstallerSection(free_attempts=2), _gateway(tmp_path),
                             LiveValues())
    client = TestClient(TestServer(server.app()))
    await client.start_server()
    return Browser(client), server


def test_pages_need_a_login_and_cookies_are_strict(tmp_path: Path) -> None:
    async def scenario() -> None:
        client, _ = await _client(tmp_path)
        try:
            page = await client.get("/", allow_redirects=False)
            assert (page.status, page.headers["Location"]) == (303, "/login")
            cookie = page.headers["Set-Cookie"]
            for attribute in ("Secure", "HttpOnly", "SameSite=Strict"):
                assert attribute in cookie
            assert (await client.get("/api/status")).status == 401
        finally:
            await client.close()

    asyncio.run(scenario())


def test_login_and_a_form_without_csrf_is_refused(tmp_path: Path) -> None:
    async def scenario() -> None:
        client, server = await _client(tmp_path)
        try:
            forged = await client.post("/login", data={"password": PASSWORD},
                                       allow_redirects=False)
            assert forged.status == 403 and "CSRF" in await forged.text()
            wrong = await client.post("/login", data={"password": PASSWORD, "csrf": "x" * 43},
                                      allow_redirects=False)
            assert wrong.status == 403
            csrf = await _csrf(client)
            login = await client.post("/login", data={"password": PASSWORD, "csrf": csrf},
                                      allow_redirects=False)
            assert (login.status, login.headers["Location"]) == (303, "/")
            assert (await client.get("/", allow_redirects=False)).status == 200
            assert [e.event for e in server.audit.pending] == ["login"]
            # the login replaced the session: the old token is worthless now
            stale = await client.post("/logout", data={"csrf": csrf}, allow_redirects=False)
            assert stale.status == 403
            fresh = await _csrf(client, "/")
            out = await client.post("/logout", data={"csrf": fresh}, allow_redirects=False)
            assert out.status == 303
            assert (await client.get("/", allow_redirects=False)).status == 303
        finally:
            await client.close()

    asyncio.run(scenario())


def test_login_throttle_engages_per_address(tmp_path: Path) -> None:
    async def scenario() -> None:
        client, server = await _client(tmp_path)
        try:
            csrf = await _csrf(client)
            codes = [(await client.post("/login", data={"password": "wrong", "csrf": csrf},
                                        allow_redirects=False)).status for _ in range(3)]
            assert codes == [401, 401, 429]
            # the right password is not even checked while the address waits
            right = await client.post("/login", data={"password": PASSWORD, "csrf": csrf},
                                      allow_redirects=False)
            assert right.status == 429 and "try again" in await right.text()
            assert server.throttle.refused == 2
        finally:
            await client.close()

    asyncio.run(scenario())
