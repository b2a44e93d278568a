"""Desensitisation at the edge: each action on summaries and events, the counts, the key."""

from __future__ import annotations

import statistics
from pathlib import Path

import numpy as np
import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from tandem.gateway.identity.keystore import SoftwareKeyStore
from tandem.gateway.privacy import transforms
from tandem.gateway.privacy.gate import PrivacyGate, read_counts
from tandem.gateway.privacy.keys import PSEUDONYM_SECRET, pseudonym_key
from tandem.gateway.privacy.stage import PrivacyConfigError, PrivacyStage
from tandem.gateway.store.database import GatewayDatabase
from tandem.gateway.store.outbox import Outbox, Priority
from tandem.wire.batch import Batch, Event, Sealed, Summary, decode_batch, encode_batch
from tandem.wire.errors import WireError
from tandem.wire.policy import FieldRule, PrivacyPolicy
from tandem.wire.sealed import open_sealed

SUMMARY = Summary("node-01", "temp", 1000, 2000, 10, 21.26, 23.74, 22.51, 23.2)
EVENT = Event("node-01", "overheat", 1500, 2, {"temp": 81.5, "lat": 48.137154, "ok": 1.0})


def _stage(*rules: FieldRule, device_ids: str = "clear", **kwargs: object) -> PrivacyStage:
    return PrivacyStage(PrivacyPolicy(device_ids, rules), rng=np.random.default_rng(7),
                        **kwargs)  # type: ignore[arg-type]


def test_drop_removes_the_channel_and_the_event_value() -> None:
    out, tally = _stage(FieldRule("temp", "drop")).apply([SUMMARY, EVENT])
    assert out == [Event("node-01", "overheat", 1500, 2, {"lat": 48.137154, "ok": 1.0})]
    assert ("temp", "drop", 2, 5) in tally.rows()  # one summary (4 values) + one event value


def test_generalise_by_step_buckets_and_digits() -> None:
    assert transforms.generalise(22.51, FieldRule("t", "generalise", step=0.5)) == 22.5
    assert transforms.generalise(48.137154, FieldRule("lat", "generalise", digits=2)) == 48.13
    assert transforms.generalise(-48.137, FieldRule("lat", "generalise", digits=1)) == -48.1
    buckets = FieldRule("t", "generalise", buckets=(0.0, 10.0, 20.0))
    assert [transforms.generalise(v, buckets) for v in (-5, 5, 10, 25)] == [0, 0, 10, 20]
    out, _ = _stage(FieldRule("temp", "generalise", step=1.0)).apply([SUMMARY])
    assert out == [Summary("node-01", "temp", 1000, 2000, 10, 21.0, 24.0, 23.0, 23.0)]


def test_perturb_adds_laplace_noise_of_the_stated_scale_and_keeps_order() -> None:
    rule = FieldRule("temp", "perturb", epsilon=0.5, sensitivity=1.0)
    rng = np.random.default_rng(1)
    noise = [transforms.perturb(0.0, rule, rng) for _ in range(20_000)]
    # Laplace(0, b) has mean |x| = b; here b = sensitivity / epsilon = 2
    assert statistics.fmean(abs(n) for n in noise) == pytest.approx(2.0, rel=0.05)
    for _ in range(200):
        s = transforms.perturb_summary(SUMMARY, rule, rng)
        assert s.minimum <= s.mean <= s.maximum and s.count == SUMMARY.count
        decode_batch(encode_batch(Batch("gw", 1, 0, (s,))))  # still a valid summary


def test_pseudonyms_are_keyed_stable_and_applied_everywhere() -> None:
    key = b"k" * 32
    out, tally = _stage(device_ids="pseudonymise", pseudonym_key=key).apply([SUMMARY, EVENT])
    alias = transforms.pseudonym(key, "node-01")
    assert alias.startswith("p-") and len(alias) == 26
    assert {r.device for r in out} == {alias}
    assert alias != transforms.pseudonym(b"j" * 32, "node-01")
    assert ("device", "pseudonymise", 2, 2) in tally.rows()
    with pytest.raises(PrivacyConfigError, match="pseudonym key"):
        _stage(device_ids="pseudonymise")


def test_encrypt_seals_the_statistics_for_the_cloud_key_only() -> None:
    cloud = ec.generate_private_key(ec.SECP256R1())
    stage = _stage(FieldRule("temp", "encrypt"), recipient=cloud.public_key())
    out, tally = stage.apply([SUMMARY, EVENT])
    sealed_summary, event, sealed_values = out
    assert isinstance(sealed_summary, Sealed) and isinstance(sealed_values, Sealed)
    assert event == Event("node-01", "overheat", 1500, 2, {"lat": 48.137154, "ok": 1.0})
    assert open_sealed(sealed_summary, cloud) == {"t1": 2000, "n": 10, "min": 21.26,
                                                  "max": 23.74, "mean": 22.51, "last": 23.2}
    assert open_sealed(sealed_values, cloud) == {"vals": {"temp": 81.5}}
    assert ("temp", "encrypt", 2, 5) in tally.rows()
    batch = Batch("gw-01", 1, 0, tuple(out))
    wire = encode_batch(batch)
    assert decode_batch(wire) == batch
    assert all(str(v).encode() not in wire for v in (21.26, 23.74, 22.51, 81.5))
    with pytest.raises(WireError, match="sealed for key"):
        open_sealed(sealed_summary, ec.generate_private_key(ec.SECP256R1()))
    moved = Sealed("node-02", *[getattr(sealed_summary, f) for f in Sealed.__slots__[1:]])
    with pytest.raises(WireError, match="does not open"):
        open_sealed(moved, cloud)  # the visible fields are bound to the ciphertext
    with pytest.raises(PrivacyConfigError, match="data key"):
        _stage(FieldRule("temp", "encrypt"))


def test_sealed_records_need_batch_version_2() -> None:
    cloud = ec.generate_private_key(ec.SECP256R1())
    out, _ = _stage(FieldRule("temp", "encrypt"), recipient=cloud.public_key()).apply([SUMMARY])
    assert encode_batch(Batch("gw", 1, 0, tuple(out)))[3] == 2  # "v": 2
    assert encode_batch(Batch("gw", 1, 0, (SUMMARY,)))[3] == 1
    forged = encode_batch(Batch("gw", 1, 0, tuple(out))).replace(b"av\x02", b"av\x01", 1)
    with pytest.raises(WireError, match="version 2"):
        decode_batch(forged)


def test_the_gate_desensitises_what_enters_the_outbox_and_counts_it(tmp_path: Path) -> None:
    database = GatewayDatabase(tmp_path / "gw.sqlite3")
    try:
        outbox = Outbox(database)
        gate = PrivacyGate(database)
        outbox.admission = gate
        database.call_sync(outbox.put_sync, [SUMMARY], Priority.SUMMARY)
        gate.install(_stage(FieldRule("temp", "drop")))
        database.call_sync(outbox.put_sync, [SUMMARY, EVENT], Priority.ALARM)
        rows = database.call_sync(lambda: database.connection.execute(
            "SELECT body FROM records ORDER BY id").fetchall())
        assert len(rows) == 2 and b"temp" not in rows[1][0]
        counts = database.call_sync(lambda: read_counts(database.connection))
        assert ("temp", "clear", 1, 4) in counts and ("temp", "drop", 2, 5) in counts
    finally:
        database.close()


def test_the_pseudonym_key_is_sealed_once_and_never_on_disk_in_clear(tmp_path: Path) -> None:
    store = SoftwareKeyStore.generate(tmp_path / "key.pem", b"pass", tmp_path / "sealed")
    key = pseudonym_key(store)
    assert pseudonym_key(store) == key and len(key) == 32
    reopened = SoftwareKeyStore(tmp_path / "key.pem", b"pass", tmp_path / "sealed")
    assert reopened.unseal(PSEUDONYM_SECRET) == key
    for path in tmp_path.rglob("*"):
        if path.is_file():
            assert key not in path.read_bytes() and key.hex().encode() not in path.read_bytes()


def test_raw_snippets_are_pseudonymised_or_dropped_by_a_rule_on_raw() -> None:
    from tandem.wire.raw import RawSnippet

    snippet = RawSnippet("node-01", 1000, 800, 0.004, "xyz", b"\x00\x01" * 3)
    out, _ = _stage(device_ids="pseudonymise", pseudonym_key=b"k" * 32).apply([snippet])
    assert out[0].device == transforms.pseudonym(b"k" * 32, "node-01")
    out, tally = _stage(FieldRule("raw", "encrypt"), recipient=ec.generate_private_key(
        ec.SECP256R1()).public_key()).apply([snippet])
    assert out == [] and ("raw", "drop", 1, 1) in tally.rows()
