"""Browser sign-in: the form, CSRF on every form POST, the session, sign-out, and audit rows."""

from __future__ import annotations

import re
import time

import pytest

from tandem.cloud.access import accounts
from tandem.cloud.audit import chain as auditlog
from tandem.cloud.db import engine as database

PASSWORD = "correct horse battery staple"


@pytest.fixture
def alice(app, kit):
    with database.sessions(app).begin() as session:
        accounts.add_user(session, "alice", "operator", PASSWORD, kit.now_ms(),
                          email="alice@example.org")
    return "alice"


def csrf_token(client, path: str = "/login") -> str:
    match = re.search(r'name="csrf_token" value="([^"]+)"', client.get(path).text)
    assert match, "the page has no CSRF token"
    return match.group(1)


def sign_in(client, user: str = "alice", password: str = PASSWORD, **extra: str):
    form = {"user": user, "password": password, "csrf_token": csrf_token(client)} | extra
    return client.post("/login", data=form)


def audit_events(app) -> list[tuple[str, str]]:
    with database.sessions(app)() as session:
        return [(e.event, e.actor) for e in auditlog.entries(session)]


def test_sign_in_starts_a_session_that_the_api_accepts(app, anonymous, alice):
    assert anonymous.get("/").headers["Location"] == "/login?next=/"
    response = sign_in(anonymous, next="/api/v1/whoami")
    assert (response.status_code, response.headers["Location"]) == (302, "/api/v1/whoami")
    cookie = anonymous.get_cookie("tandem_session")
    assert cookie is not None and cookie.http_only and cookie.same_site == "Lax"
    assert anonymous.get("/api/v1/whoami").json == {
        "name": "alice", "kind": "user", "role": "operator", "via": "session", "token": None}
    assert "Signed in as <strong>alice</strong>" in anonymous.get("/").text
    assert ("login.ok", "user:alice") in audit_events(app)


def test_a_wrong_password_or_unknown_user_gets_the_same_answer_and_is_audited(
        app, anonymous, alice, kit, monkeypatch):
    now = kit.now_ms()  # both attempts in one audit interval
    monkeypatch.setattr("tandem.cloud.audit.record.now_ms", lambda: now)
    wrong = sign_in(anonymous, password="not the password")
    unknown = sign_in(anonymous, user="mallory")
    assert wrong.status_code == unknown.status_code == 401
    assert "Wrong user name or password" in wrong.text
    assert anonymous.get("/api/v1/whoami").status_code == 401
    # the first failure from a source is audited; the next ones in its interval are
    # counted (tests/cloud/test_audit_refusals.py)
    failed = [(e, a) for e, a in audit_events(app) if e == "login.failed"]
    assert failed == [("login.failed", "anonymous@127.0.0.1")]
    with database.sessions(app)() as session:
        details = [e.detail for e in auditlog.entries(session) if e.event == "login.failed"]
    assert details == ['{"aggregated":true,"user":"alice"}']


def test_form_posts_without_a_valid_csrf_token_are_refused(anonymous, alice):
    no_token = anonymous.post("/login", data={"user": "alice", "password": PASSWORD})
    assert (no_token.status_code, no_token.json["error"]) == (400, "bad_request")
    assert "CSRF" in no_token.json["detail"]
    forged = anonymous.post("/login", data={"user": "alice", "password": PASSWORD,
                                            "csrf_token": "forged"})
    assert forged.status_code == 400
    assert anonymous.get("/api/v1/whoami").status_code == 401
    assert sign_in(anonymous).status_code == 302
    assert anonymous.post("/logout").status_code == 400  # a cross-site form cannot sign us out
    assert anonymous.get("/api/v1/whoami").status_code == 200


def test_sign_out_ends_the_session(app, anonymous, alice):
    sign_in(anonymous)
    token = csrf_token(anonymous, "/")
    response = anonymous.post("/logout", data={"csrf_token": token})
    assert (response.status_code, response.headers["Location"]) == (302, "/login")
    assert anonymous.get("/api/v1/whoami").status_code == 401
    assert ("logout", "user:alice") in audit_events(app)


def test_csrf_header_works_for_scripts_and_bearer_requests_need_no_csrf(app, anonymous, alice,
                                                                        kit):
    sign_in(anonymous)
    token = csrf_token(anonymous, "/")
    assert anonymous.post("/logout", headers={"X-CSRFToken": token}).status_code == 302
    other = app.test_client()
    admin = kit.bearer(kit.token_for(app, "admin"))
    assert other.post("/logout", headers=admin).status_code == 302


def test_disabling_a_user_ends_their_sessions(app, anonymous, alice):
    sign_in(anonymous)
    with database.sessions(app).begin() as session:
        accounts.set_active(session, "alice", False)
    assert anonymous.get("/api/v1/whoami").status_code == 401
    assert sign_in(anonymous).status_code == 401


@pytest.mark.parametrize("target", ["https://evil.example/", "//evil.example/x", "/\\evil",
                                    "javascript:alert(1)", "relative"])
def test_sign_in_never_redirects_off_site(anonymous, alice, target):
    assert sign_in(anonymous, next=target).headers["Location"] == "/"


def test_a_token_only_user_cannot_sign_in_with_any_password(app, anonymous, kit):
    kit.token_for(app, "viewer")
    assert sign_in(anonymous, user="viewer-user", password="").status_code == 401
    assert sign_in(anonymous, user="viewer-user", password=PASSWORD).status_code == 401


def test_password_hashes_are_argon2id_and_slow_enough(app, alice):
    with database.sessions(app)() as session:
        stored = accounts.find_user(session, "alice")
        assert stored is not None and stored.password_hash is not None
        assert stored.password_hash.startswith("$argon2id$v=19$m=65536,t=3,p=4$")
        started = time.perf_counter()
        found = accounts.credentials(session, "alice")
        assert accounts.password_matches(found, PASSWORD)
        assert time.perf_counter() - started > 0.005  # a real KDF, not a fast hash


def _saved_cookie(client) -> str:
    cookie = client.get_cookie("tandem_session")
    assert cookie is not None
    return str(cookie.value)


def _replayed(app, cookie: str) -> int:
    """Status of /api/v1/whoami for a fresh client presenting a copied session cookie."""
    thief = app.test_client()
    thief.set_cookie("tandem_session", cookie)
    return int(thief.get("/api/v1/whoami").status_code)


def test_a_saved_cookie_no_longer_answers_after_sign_out(app, anonymous, alice):
    sign_in(anonymous)
    saved = _saved_cookie(anonymous)
    assert _replayed(app, saved) == 200
    anonymous.post("/logout", data={"csrf_token": csrf_token(anonymous, "/")})
    assert _replayed(app, saved) == 401


@pytest.mark.parametrize("change", ["password", "role", "disable and enable"])
def test_a_password_role_or_activation_change_ends_sessions(app, anonymous, alice, change):
    sign_in(anonymous)
    saved = _saved_cookie(anonymous)
    with database.sessions(app).begin() as session:
        if change == "password":
            accounts.set_password(session, "alice", "another long passphrase")
        elif change == "role":
            assert accounts.set_role(session, "alice", "viewer")
        else:
            accounts.set_active(session, "alice", False)
            accounts.set_active(session, "alice", True)
    assert anonymous.get("/api/v1/whoami").status_code == 401
    assert _replayed(app, saved) == 401
    password = "another long passphrase" if change == "password" else PASSWORD
    assert sign_in(anonymous, password=password).status_code == 302  # a new sign-in works
    assert anonymous.get("/api/v1/whoami").status_code == 200
