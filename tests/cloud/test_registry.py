"""The registry on every supported database: gateways, device sightings, the batch ledger."""

from __future__ import annotations

import pytest
from sqlalchemy.exc import IntegrityError

from tandem.cloud.db import engine as database
from tandem.cloud.fleet import registry

pytestmark = pytest.mark.storages("sqlite", "postgresql")


def test_add_is_idempotent_and_a_new_key_needs_replace(app):
    sessions = database.sessions(app)
    with sessions.begin() as session:
        assert registry.add_gateway(session, "gw-new", "c", "k1", "f", 1) == "added"
        assert registry.add_gateway(session, "gw-new", "c", "k1", "f", 2) == "unchanged"
        with pytest.raises(registry.RegistryError, match="different key"):
            registry.add_gateway(session, "gw-new", "c", "k2", "f", 3)
        assert registry.add_gateway(session, "gw-new", "c", "k2", "f", 3, replace=True) == \
            "replaced"
    with sessions() as session:
        assert [g.name for g in registry.list_gateways(session)] == [
            "gw-01", "gw-02", "gw-new", "gw-old"]
        assert registry.find_gateway(session, "gw-old").active is False


def test_touch_devices_keeps_first_seen_and_moves_last_seen_of_the_owner_only(app):
    sessions = database.sessions(app)
    with sessions.begin() as session:
        registry.touch_devices(session, "gw-01", ["b", "a", "a"], 10)
    with sessions.begin() as session:
        registry.touch_devices(session, "gw-01", ["a"], 20)
        registry.touch_devices(session, "gw-02", ["a"], 30)  # not its device: no change
    with sessions() as session:
        seen = [(d.device, d.gateway, d.first_seen_ms, d.last_seen_ms)
                for d in registry.list_devices(session)]
        assert seen == [("a", "gw-01", 10, 20), ("b", "gw-01", 10, 10)]
        assert registry.list_devices(session, "gw-02") == []


def test_the_first_gateway_to_claim_a_device_owns_it_until_it_is_moved(app):
    sessions = database.sessions(app)
    with sessions.begin() as session:
        assert registry.claim_devices(session, "gw-01", ["a", "b"], 10) == []
        assert registry.claim_devices(session, "gw-02", ["b", "c", "a"], 20) == ["a", "b"]
    with sessions.begin() as session:
        assert registry.owner_of(session, "c") == "gw-02"
        assert registry.move_device(session, "a", "gw-02") == "gw-01"
        with pytest.raises(registry.RegistryError):
            registry.move_device(session, "a", "gw-old")  # revoked
        assert registry.claim_devices(session, "gw-02", ["a"], 30) == []


def _key(gateway: str, seq: int, epoch: int = 5, digest: str = "d") -> registry.BatchKey:
    return registry.BatchKey(gateway, epoch, seq, digest)


def test_ledger_refuses_a_second_entry_and_prunes_by_sent_time(app):
    sessions = database.sessions(app)
    with sessions.begin() as session:
        registry.record_batch(session, _key("gw-01", 1), 100, 100, 1)
        registry.record_batch(session, _key("gw-01", 2), 200, 200, 1)
        registry.record_batch(session, _key("gw-02", 1), 300, 300, 1)
        registry.record_batch(session, _key("gw-01", 1, epoch=6), 300, 300, 1)  # another epoch
    with pytest.raises(IntegrityError), sessions.begin() as session:
        registry.record_batch(session, _key("gw-01", 1), 999, 999, 1)
    with sessions.begin() as session:
        assert registry.prune_ledger(session, 250) == 2
    with sessions() as session:
        assert not registry.batch_seen(session, _key("gw-01", 1))
        assert registry.batch_seen(session, _key("gw-02", 1))


def test_a_known_key_with_another_digest_is_a_conflict_naming_where_to_resume(app):
    sessions = database.sessions(app)
    with sessions.begin() as session:
        for seq in (1, 2, 3):
            registry.record_batch(session, _key("gw-01", seq), 100, 100, 1)
        registry.record_batch(session, _key("gw-01", 9, epoch=6), 100, 100, 1)
    with sessions() as session:
        assert registry.batch_seen(session, _key("gw-01", 2))
        with pytest.raises(registry.BatchConflict) as info:
            registry.batch_seen(session, _key("gw-01", 2, digest="other"))
        assert info.value.next_seq == 4  # epoch 5 only: epoch 6 does not count
        assert registry.next_seq(session, "gw-01", 7) == 1
