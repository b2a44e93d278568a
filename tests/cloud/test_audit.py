"""The audit log: what is recorded, the hash chain, append-only, and `audit verify` on tampering."""

from __future__ import annotations

import hashlib
import json
import threading
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from tandem.cloud.audit import chain as auditlog
from tandem.cloud.audit import record as audit
from tandem.cloud.cli.main import main
from tandem.cloud.db import engine as database

pytestmark = pytest.mark.storages("sqlite", "postgresql")


def rows(app) -> list[auditlog.AuditEntry]:
    with database.sessions(app)() as session:
        return list(auditlog.entries(session))


def fill(app, count: int = 5) -> None:
    with app.app_context():
        for n in range(count):
            audit.record("test.event", "cli:tester", {"n": n, "text": "héllo"})


def cli_config(app, tmp_path: Path) -> Path:
    """A config file for the CLI naming app's database and data directory."""
    config = app.config["TANDEM"]
    path = tmp_path / "cli.toml"
    path.write_text(f'version = 1\nmode = "development"\ndata_dir = "{config.data_dir}"\n'
                    f'[database]\nurl = "{config.database.url}"\n')
    return path


def verify(capsys, app, tmp_path) -> tuple[int, str]:
    code = main(["audit", "verify", "--config", str(cli_config(app, tmp_path))])
    out, err = capsys.readouterr()
    return code, out + err


def tamper(app, statement: str, **values: object) -> None:
    """Change the table as someone with database access would: triggers off first."""
    with database.engine(app).begin() as conn:
        if conn.dialect.name == "sqlite":
            conn.execute(text("DROP TRIGGER audit_log_no_update"))
            conn.execute(text("DROP TRIGGER audit_log_no_delete"))
        else:
            conn.execute(text("ALTER TABLE audit_log DISABLE TRIGGER USER"))
        conn.execute(text(statement), values)


def test_rows_chain_by_sha256_of_the_previous_hash_and_the_canonical_row(app):
    fill(app, 3)
    entries = rows(app)
    assert [e.seq for e in entries] == [1, 2, 3]
    assert entries[0].prev_hash == auditlog.GENESIS
    for before, entry in zip([None, *entries], entries, strict=False):
        assert entry.prev_hash == (before.hash if before else auditlog.GENESIS)
    second = entries[1]
    content = (b'{"actor":"cli:tester","at_ms":%d,"detail":{"n":1,"text":"h\xc3\xa9llo"},'
               b'"event":"test.event","seq":2}' % second.at_ms)
    assert second.hash == hashlib.sha256(bytes.fromhex(second.prev_hash) + content).hexdigest()


def test_verify_passes_an_intact_log(app, capsys, tmp_path):
    fill(app)
    code, out = verify(capsys, app, tmp_path)
    head = rows(app)[-1].hash
    assert (code, out) == (0, f"audit log ok: 5 rows, head {head}\n")
    with database.sessions(app)() as session:
        assert auditlog.verify(session, expect_head=head).ok
        cut = auditlog.verify(session, expect_head="ab" * 32)
    assert (cut.ok, cut.bad_seq) == (False, 6)


def test_the_database_refuses_updates_and_deletes(app):
    fill(app, 2)
    for statement in ("UPDATE audit_log SET actor = 'x' WHERE seq = 1",
                      "DELETE FROM audit_log WHERE seq = 2"):
        with pytest.raises(DBAPIError, match="append-only"), \
                database.engine(app).begin() as conn:
            conn.execute(text(statement))
    assert len(rows(app)) == 2


def test_verify_names_a_modified_row(app, capsys, tmp_path):
    fill(app)
    tamper(app, "UPDATE audit_log SET detail = :forged WHERE seq = 3",
           forged='{"n":99,"text":"héllo"}')
    code, out = verify(capsys, app, tmp_path)
    assert code == 1
    assert out.startswith("audit log broken at row seq 3: hash does not match")


def test_verify_names_the_row_after_a_deleted_one(app, capsys, tmp_path):
    fill(app)
    tamper(app, "DELETE FROM audit_log WHERE seq = 2")
    code, out = verify(capsys, app, tmp_path)
    assert code == 1
    assert out.startswith("audit log broken at row seq 3: expected seq 2")


def test_verify_catches_a_rewritten_hash_by_the_next_link(app, capsys, tmp_path):
    fill(app)
    tamper(app, "UPDATE audit_log SET actor = 'user:mallory', hash = "
                f"'{'0' * 63}1' WHERE seq = 4")
    code, out = verify(capsys, app, tmp_path)
    assert (code, out.split(":")[0]) == (1, "audit log broken at row seq 4")


def test_security_events_are_recorded(app, client, anonymous, pki, kit):
    forged = kit.envelope(pki.other_gateway, 1, gateway="gw-01", kid="gw-01")
    assert kit.post(anonymous, forged).status_code == 401
    stale = kit.envelope(pki.gateway, 2, sent_ms=1_000)
    assert kit.post(anonymous, stale).status_code == 422
    assert kit.post(anonymous, b"\xff").status_code in (400, 415)  # noise: not audited
    assert client.get("/api/v1/export?start=0&end=10&format=csv").status_code == 200
    entries = rows(app)
    assert [(e.event, json.loads(e.detail).get("reason")) for e in entries] == [
        ("ingest.refused", "bad_signature"), ("ingest.refused", "stale_batch"),
        ("data.export", None)]
    assert entries[0].actor == "anonymous@127.0.0.1"
    assert entries[2].actor == "token:admin-user/t1"
    assert json.loads(entries[2].detail) == {"device": None, "start": 0, "end": 10,
                                             "format": "csv"}


def test_only_admins_read_the_log_over_the_api(app, client, anonymous, kit):
    fill(app, 3)
    body = client.get("/api/v1/audit?after=1&limit=1").json
    assert [(e["seq"], e["event"], e["detail"]) for e in body["entries"]] == [
        (2, "test.event", {"n": 1, "text": "héllo"})]
    operator = kit.bearer(kit.token_for(app, "operator"))
    assert anonymous.get("/api/v1/audit", headers=operator).status_code == 403


def test_concurrent_appends_keep_one_unbroken_chain(app):
    errors: list[BaseException] = []

    def append_some(worker: int) -> None:
        try:
            with app.app_context():
                for n in range(10):
                    audit.record("test.concurrent", f"cli:w{worker}", {"n": n})
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=append_some, args=(w,)) for w in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert errors == [] and not any(t.is_alive() for t in threads)
    with database.sessions(app)() as session:
        verdict = auditlog.verify(session)
    assert (verdict.ok, verdict.rows) == (True, 40)
