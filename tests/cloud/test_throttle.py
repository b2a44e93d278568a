"""Specification: failed sign-ins are throttled per source and per account, across workers.

A throttled attempt is refused with 429 before the password is hashed; the
counters live in the database, so two app instances on one database (two
worker processes) share them.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest

from tandem.cloud import close_app, create_app
from tandem.cloud.access import accounts
from tandem.cloud.db import engine as database

PASSWORD = "correct horse battery staple"
LIMITS = {"login_failures_per_source": 4, "login_failures_per_account": 3,
          "login_window_s": 60}


@pytest.fixture
def apps(tmp_path, pki, kit) -> Iterator[tuple]:
    """Two apps (as two worker processes would be) on one database, with user alice."""
    config = kit.app_config(tmp_path, pki) | {"security": LIMITS}
    first, second = create_app(config), create_app(config)
    with database.sessions(first).begin() as session:
        accounts.add_user(session, "alice", "operator", PASSWORD, kit.now_ms())
        accounts.add_user(session, "bob", "operator", PASSWORD, kit.now_ms())
    yield first, second
    close_app(first)
    close_app(second)


def attempt(app, user: str, password: str, source: str = "10.0.0.1") -> int:
    client = app.test_client()
    client.environ_base["REMOTE_ADDR"] = source
    page = client.get("/login").text
    token = re.search(r'name="csrf_token" value="([^"]+)"', page)
    assert token
    response = client.post("/login", data={"user": user, "password": password,
                                           "csrf_token": token.group(1)})
    if response.status_code == 429:
        assert response.json["error"] == "too_many_attempts"
        assert int(response.headers["Retry-After"]) == LIMITS["login_window_s"]
    return int(response.status_code)


def test_an_account_is_throttled_after_its_failures_whichever_worker_saw_them(apps):
    first, second = apps
    assert [attempt(first, "alice", "wrong password!", f"10.0.1.{n}") for n in range(3)] == [
        401, 401, 401]
    # the limit is reached: even the right password is refused, by the other worker too
    assert attempt(second, "alice", PASSWORD, "10.0.2.1") == 429
    assert attempt(first, "bob", PASSWORD, "10.0.2.1") == 302  # other accounts are not


def test_a_source_is_throttled_after_its_failures_on_any_account(apps):
    first, second = apps
    users = ["alice", "bob", "carol", "dave"]
    assert [attempt(first, u, "wrong password!") for u in users] == [401] * 4
    assert attempt(second, "bob", PASSWORD) == 429
    assert attempt(second, "bob", PASSWORD, "10.0.0.2") == 302  # another source is not


def test_throttling_ends_when_the_window_has_passed(apps, monkeypatch, kit):
    first, _ = apps
    for _ in range(3):
        attempt(first, "alice", "wrong password!")
    assert attempt(first, "alice", PASSWORD) == 429
    later = kit.now_ms() + LIMITS["login_window_s"] * 1000 + 1
    monkeypatch.setattr("tandem.cloud.access.login.now_ms", lambda: later)
    assert attempt(first, "alice", PASSWORD) == 302


def test_throttled_attempts_are_counted_and_never_hash_a_password(apps, monkeypatch, kit):
    first, _ = apps
    for _ in range(3):
        attempt(first, "alice", "wrong password!")

    def no_hashing(*_args: object) -> bool:
        raise AssertionError("a throttled attempt must not reach the password hash")

    monkeypatch.setattr(accounts.passwords, "verify_password", no_hashing)
    assert [attempt(first, "alice", PASSWORD) for _ in range(5)] == [429] * 5
    text = first.test_client().get("/metrics",
                                   headers=kit.bearer(kit.token_for(first, "admin"))).text
    assert 'tandem_cloud_logins_total{outcome="throttled"} 5.0' in text
    assert 'tandem_cloud_logins_total{outcome="failed"} 3.0' in text
