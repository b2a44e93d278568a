"""Specification: a batch whose records break the cloud's bounds is refused whole with 422."""

from __future__ import annotations

import datetime as dt

import pytest

from tandem.wire.batch import Event

YEAR_9999_MS = int(dt.datetime(9999, 1, 1, tzinfo=dt.UTC).timestamp() * 1000)


def _cases(kit):
    return {
        "t0 near 2^63": [kit.summary(t0_ms=(1 << 63) - 120_000)],
        "t0 in year 9999": [kit.summary(t0_ms=YEAR_9999_MS)],
        "event in year 9999": [kit.event(t_ms=YEAR_9999_MS)],
        "severity 2^63": [Event(device="dev-1", name="x", t_ms=1_000_000,
                                severity=(1 << 63) - 1, values={})],
        "count beyond 32 bits": [kit.summary(count=1 << 40)],
    }


@pytest.mark.storages("sqlite", "postgresql+influxdb")
@pytest.mark.parametrize("case", ["t0 near 2^63", "t0 in year 9999", "event in year 9999",
                                  "severity 2^63", "count beyond 32 bits"])
def test_implausible_records_refuse_the_batch_and_store_nothing(app, client, pki, kit, case):
    before = kit.snapshot(app)
    records = [kit.summary()] + _cases(kit)[case]
    response = kit.post(client, kit.envelope(pki.gateway, 1, records))
    assert (response.status_code, response.json["error"]) == (422, "invalid_batch")
    assert "record 1" in response.json["detail"]
    assert kit.snapshot(app) == before


def test_records_up_to_the_clock_skew_are_accepted(client, pki, kit):
    sent = kit.now_ms()
    body = kit.envelope(pki.gateway, 1, [kit.summary(t0_ms=sent + 60_000),
                                         kit.event(t_ms=sent + 60_000, severity=255)],
                        sent_ms=sent)
    assert kit.post(client, body).json["status"] == "stored"
