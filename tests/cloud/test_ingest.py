"""POST /ingest/v1/batches: a batch is stored once; each fault has its code and stores nothing."""

from __future__ import annotations

import json

import cbor2
import pytest
from sqlalchemy import text
from werkzeug.test import EnvironBuilder, run_wsgi_app

from tandem.cloud.db import engine as database
from tandem.wire.batch import Batch, encode_batch
from tandem.wire.cose import sign1


@pytest.mark.storages("sqlite", "influxdb", "postgresql", "postgresql+influxdb")
def test_signed_batch_is_stored_with_its_records(app, client, pki, kit):
    records = [kit.summary(t0_ms=1_000_000), kit.summary(channel="hum", t0_ms=1_000_000),
               kit.event(t_ms=1_030_000)]
    response = kit.post(client, kit.envelope(pki.gateway, 1, records))
    assert response.status_code == 200
    assert response.json == {"status": "stored", "gateway": "gw-01", "seq": 1, "records": 3}
    tables = kit.snapshot(app)
    assert len(tables["summaries"]) == 2
    assert len(tables["events"]) == 1
    assert [(r[1], r[2], r[5]) for r in tables["ingested_batches"]] == [("gw-01", 1, 3)]
    assert [r[:2] for r in tables["devices"]] == [("dev-1", "gw-01")]


@pytest.mark.storages("sqlite", "influxdb", "postgresql", "postgresql+influxdb")
def test_replay_answers_duplicate_and_writes_nothing(app, client, pki, kit):
    body = kit.envelope(pki.gateway, 7, [kit.summary()])
    assert kit.post(client, body).json["status"] == "stored"
    before = kit.snapshot(app)
    again = kit.post(client, body)
    assert again.status_code == 200
    assert again.json == {"status": "duplicate", "gateway": "gw-01", "seq": 7}
    assert kit.snapshot(app) == before


@pytest.mark.storages("sqlite", "influxdb", "postgresql", "postgresql+influxdb")
def test_same_seq_with_other_content_is_a_loud_conflict_that_names_where_to_resume(
        app, client, pki, kit, caplog):
    for seq in (3, 4):
        first = kit.post(client, kit.envelope(pki.gateway, seq, [kit.summary(mean=1.0)]))
        assert first.json["status"] == "stored"
    before = kit.snapshot(app)
    response = kit.post(client, kit.envelope(pki.gateway, 3, [kit.summary(mean=99.0)]))
    assert response.status_code == 409
    assert response.json["error"] == "batch_conflict"
    assert response.json["next_seq"] == 5
    assert kit.snapshot(app) == before
    assert any(r.levelname == "WARNING" and "batch_conflict" in r.getMessage()
               for r in caplog.records)
    assert _metric(client, "tandem_cloud_batches_rejected_total",
                   'reason="batch_conflict"') == 1.0
    assert [e["reason"] for e in _audit(app)] == ["batch_conflict"]


def test_a_reset_gateway_in_a_new_epoch_is_stored_not_a_duplicate(app, client, pki, kit):
    old = kit.envelope(pki.gateway, 1, [kit.summary(mean=1.0)], epoch=11)
    assert kit.post(client, old).json["status"] == "stored"
    fresh = kit.envelope(pki.gateway, 1, [kit.summary(t0_ms=2_000_000, mean=2.0)], epoch=12)
    assert kit.post(client, fresh).json["status"] == "stored"
    assert kit.post(client, fresh).json["status"] == "duplicate"
    ledger = kit.snapshot(app)["ingested_batches"]
    assert sorted((r[1], r[6], r[2]) for r in ledger) == [("gw-01", 11, 1), ("gw-01", 12, 1)]


def _metric(client, name: str, labels: str) -> float:
    for line in client.get("/metrics").text.splitlines():
        if line.startswith(f"{name}{{") and labels in line:
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"{name}{{{labels}}} not exported")


def _audit(app) -> list[dict]:
    with database.engine(app).connect() as conn:
        rows = conn.execute(text("SELECT detail FROM audit_log WHERE event = 'ingest.refused'"))
        return [json.loads(r[0]) if isinstance(r[0], str) else r[0] for r in rows]


def test_sequences_are_per_gateway(client, pki, kit):
    assert kit.post(client, kit.envelope(pki.gateway, 1)).json["status"] == "stored"
    other = kit.envelope(pki.other_gateway, 1, [kit.summary(device="dev-2")])
    assert kit.post(client, other).json["status"] == "stored"


@pytest.mark.storages("sqlite", "influxdb", "postgresql", "postgresql+influxdb")
def test_device_last_seen_moves_and_first_seen_stays(app, client, pki, kit):
    kit.post(client, kit.envelope(pki.gateway, 1))
    first = kit.snapshot(app)["devices"][0]
    kit.post(client, kit.envelope(pki.gateway, 2))
    second = kit.snapshot(app)["devices"][0]
    assert second[2] == first[2]
    assert second[3] >= first[3]


def _reject_cases(pki, kit):
    now = kit.now_ms()
    valid = kit.envelope(pki.gateway, 1)
    protected, unprotected, payload, signature = cbor2.loads(valid).value
    bad_schema = Batch("gw-01", 1, now, (kit.summary(),))
    raw = cbor2.loads(encode_batch(bad_schema))
    raw["recs"][0]["n"] = 0
    return {
        "not cbor": (lambda: b"\xff\x00garbage", 400, "malformed"),
        "not cose": (lambda: cbor2.dumps({"hello": 1}), 400, "malformed"),
        "payload not cbor": (lambda: sign1(b"\xff\xfe", "gw-01", kit.signer_of(pki.gateway)),
                             400, "malformed"),
        "schema violation": (lambda: sign1(cbor2.dumps(raw), "gw-01", kit.signer_of(pki.gateway)),
                             422, "invalid_batch"),
        "unknown gateway": (lambda: kit.envelope(pki.unregistered, 1), 403, "unknown_gateway"),
        "revoked gateway": (lambda: kit.envelope(pki.revoked, 1), 403, "revoked_gateway"),
        "signed by another key": (lambda: kit.envelope(pki.other_gateway, 1, kid="gw-01",
                                                       gateway="gw-01"), 401, "bad_signature"),
        "tampered payload": (lambda: cbor2.dumps(cbor2.CBORTag(18, [
            protected, unprotected, payload.replace(b"temp", b"tamp"), signature])),
            401, "bad_signature"),
        "batch names another gateway": (lambda: kit.envelope(pki.gateway, 1, gateway="gw-02"),
                                        403, "gateway_mismatch"),
        "sent beyond replay window": (lambda: kit.envelope(pki.gateway, 1,
                                                           sent_ms=now - 31 * 86_400_000),
                                      422, "stale_batch"),
        "sent in the future": (lambda: kit.envelope(pki.gateway, 1, sent_ms=now + 3_600_000),
                               422, "future_batch"),
    }


REJECT_CASES = ["not cbor", "not cose", "payload not cbor", "schema violation",
                "unknown gateway", "revoked gateway", "signed by another key",
                "tampered payload", "batch names another gateway",
                "sent beyond replay window", "sent in the future"]


@pytest.mark.storages("sqlite", "postgresql+influxdb")
@pytest.mark.parametrize("case", REJECT_CASES)
def test_rejection_has_exact_status_and_code_and_stores_nothing(app, client, pki, kit, case):
    make_body, status, code = _reject_cases(pki, kit)[case]
    before = kit.snapshot(app)
    response = kit.post(client, make_body())
    assert (response.status_code, response.json["error"]) == (status, code)
    assert response.json["detail"]
    assert kit.snapshot(app) == before


def test_rejections_are_counted_by_reason(client, pki, kit):
    kit.post(client, kit.envelope(pki.unregistered, 1))
    text_metrics = client.get("/metrics").text
    assert 'tandem_cloud_batches_rejected_total{reason="unknown_gateway"} 1.0' in text_metrics
    assert 'tandem_cloud_batches_rejected_total{reason="bad_signature"} 0.0' in text_metrics


def test_rejection_is_logged_with_its_cause(client, pki, kit, caplog):
    kit.post(client, kit.envelope(pki.revoked, 1))
    assert any("revoked_gateway" in r.getMessage() and "gw-old" in r.getMessage()
               for r in caplog.records)


@pytest.mark.parametrize("content_type", [
    "application/cbor", "application/json", "application/cose; cose-type=\"cose-sign\"", ""])
def test_other_media_types_are_refused_with_415(app, client, pki, kit, content_type):
    before = kit.snapshot(app)
    response = kit.post(client, kit.envelope(pki.gateway, 1), content_type=content_type)
    assert (response.status_code, response.json["error"]) == (415, "unsupported_media_type")
    assert kit.snapshot(app) == before


def test_bare_application_cose_is_accepted(client, pki, kit):
    response = kit.post(client, kit.envelope(pki.gateway, 1), content_type="application/cose")
    assert response.status_code == 200


def test_body_over_the_limit_is_refused_with_413(tmp_path, pki, kit):
    from tandem.cloud import close_app, create_app

    small = create_app(kit.app_config(tmp_path, pki, max_batch_bytes=512))
    try:
        kit.register(small, pki.gateway, pki.ca.cert_pem_path)
        records = [kit.summary(t0_ms=1_000_000 + i * 60_000) for i in range(20)]
        body = kit.envelope(pki.gateway, 1, records)
        assert len(body) > 512
        before = kit.snapshot(small)
        response = kit.post(small.test_client(), body)
        assert (response.status_code, response.json["error"]) == (413, "too_large")
        assert kit.snapshot(small) == before
    finally:
        close_app(small)


def test_chunked_body_over_the_limit_is_refused_with_413(tmp_path, pki, kit):
    from tandem.cloud import close_app, create_app

    small = create_app(kit.app_config(tmp_path, pki, max_batch_bytes=512))
    try:
        body = kit.envelope(pki.gateway, 1, [kit.summary(t0_ms=i) for i in range(20)])
        environ = EnvironBuilder(path="/ingest/v1/batches", method="POST", data=body,
                                 content_type="application/cose").get_environ()
        del environ["CONTENT_LENGTH"]  # as a chunked upload arrives: length unknown
        environ["wsgi.input_terminated"] = True
        # straight to the WSGI app: the test client would recompute the length
        app_iter, status, _ = run_wsgi_app(small, environ, buffered=True)
        answer = json.loads(b"".join(app_iter))
        assert (status, answer["error"]) == ("413 REQUEST ENTITY TOO LARGE", "too_large")
        assert answer["detail"] == "body over 512 bytes"
    finally:
        close_app(small)


@pytest.mark.storages("sqlite", "postgresql")
def test_a_failed_write_rolls_back_the_ledger(app, client, pki, kit, monkeypatch):
    from tandem.cloud.timeseries import store as timeseries

    def broken_write(gateway, records, tx):
        tx.execute(text("SELECT * FROM no_such_table"))

    monkeypatch.setattr(timeseries.store(app), "write", broken_write)
    before = kit.snapshot(app)
    response = kit.post(client, kit.envelope(pki.gateway, 1))
    assert (response.status_code, response.json["error"]) == (503, "storage_unavailable")
    assert kit.snapshot(app) == before


@pytest.mark.storages("sqlite", "influxdb", "postgresql", "postgresql+influxdb")
def test_points_survive_a_lost_ledger_entry_without_doubling(app, client, pki, kit):
    body = kit.envelope(pki.gateway, 5, [kit.summary(), kit.event()])
    kit.post(client, body)
    with database.engine(app).begin() as conn:
        conn.execute(text("DELETE FROM ingested_batches"))
    points = kit.snapshot(app)["summaries"], kit.snapshot(app)["events"]
    assert kit.post(client, body).json["status"] == "stored"
    assert (kit.snapshot(app)["summaries"], kit.snapshot(app)["events"]) == points


@pytest.mark.storages("sqlite", "influxdb", "postgresql", "postgresql+influxdb")
def test_concurrent_copies_of_a_batch_are_stored_once(app, pki, kit):
    from concurrent.futures import ThreadPoolExecutor

    body = kit.envelope(pki.gateway, 11, [kit.summary(t0_ms=i * 60_000) for i in range(50)])

    def send(_):
        response = kit.post(app.test_client(), body)
        return response.status_code, response.json["status"]

    with ThreadPoolExecutor(max_workers=8) as pool:
        outcomes = list(pool.map(send, range(16)))
    assert sorted(outcomes) == [(200, "duplicate")] * 15 + [(200, "stored")]
    assert len(kit.snapshot(app)["summaries"]) == 50


@pytest.mark.storages("sqlite", "influxdb", "postgresql", "postgresql+influxdb")
def test_a_failure_after_the_points_is_repaired_by_the_resend(app, client, pki, kit,
                                                              monkeypatch):
    """Points may land before the ledger commits (InfluxDB); the resend has the same effect."""
    from sqlalchemy.exc import OperationalError

    from tandem.cloud.fleet import registry

    real_touch = registry.touch_devices
    calls = []

    def touch_fails_once(*args, **kwargs):
        calls.append(1)
        if len(calls) == 1:
            raise OperationalError("UPDATE devices", {}, Exception("connection lost"))
        return real_touch(*args, **kwargs)

    monkeypatch.setattr(registry, "touch_devices", touch_fails_once)
    records = [kit.summary(t0_ms=i * 60_000, mean=float(i)) for i in range(5)] + [kit.event()]
    body = kit.envelope(pki.gateway, 9, records)
    failed = kit.post(client, body)
    assert (failed.status_code, failed.json["error"]) == (503, "storage_unavailable")
    assert kit.snapshot(app)["ingested_batches"] == []
    assert kit.post(client, body).json == {"status": "stored", "gateway": "gw-01", "seq": 9,
                                           "records": 6}
    assert kit.post(client, body).json["status"] == "duplicate"
    tables = kit.snapshot(app)
    assert [p.summary.mean for p in tables["summaries"]] == [0.0, 1.0, 2.0, 3.0, 4.0]
    assert [e.event for e in tables["events"]] == [kit.event()]
    assert len(tables["ingested_batches"]) == 1


@pytest.mark.storages("influxdb")
def test_unreachable_influxdb_answers_503_and_commits_no_ledger(tmp_path, pki, kit,
                                                                storage_config):
    from tandem.cloud import close_app, create_app
    from tandem.tools.services import free_port

    config = kit.app_config(tmp_path, pki)
    config["timeseries"] = {**storage_config["timeseries"],
                            "url": f"http://127.0.0.1:{free_port()}"}  # nothing listens
    app = create_app(config)
    try:
        kit.register(app, pki.gateway, pki.ca.cert_pem_path)
        response = kit.post(app.test_client(), kit.envelope(pki.gateway, 1))
        assert (response.status_code, response.json["error"]) == (503, "storage_unavailable")
        assert response.headers["Retry-After"] == "5"
        with database.engine(app).connect() as conn:
            assert conn.execute(text("SELECT COUNT(*) FROM ingested_batches")).scalar() == 0
        health = app.test_client().get("/healthz")
        assert (health.status_code, health.json["failed"]) == (503, ["timeseries"])
    finally:
        close_app(app)


@pytest.mark.storages("influxdb")
def test_a_time_influxdb_cannot_hold_is_refused_with_422(app, client, pki, kit):
    from tandem.cloud.timeseries.lineprotocol import MAX_TIME_MS

    before = kit.snapshot(app)
    body = kit.envelope(pki.gateway, 1, [kit.summary(), kit.summary(t0_ms=MAX_TIME_MS + 1)])
    response = kit.post(client, body)
    assert (response.status_code, response.json["error"]) == (422, "invalid_batch")
    # refused before the store sees it: no record may be stamped after its batch was sent
    assert "after the batch was sent" in response.json["detail"]
    assert kit.snapshot(app) == before
