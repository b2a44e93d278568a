"""Device access, pure parts: record framing, identity, policy, config and counters."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from cryptography import x509

from tandem.gateway.access import AccessConfig, AccessStats, DevicePolicy
from tandem.gateway.access.dtls_context import CookieJar
from tandem.gateway.access.identity import IdentityError, device_identity
from tandem.gateway.access.records import (
    client_hello_random,
    is_client_hello,
    looks_like_dtls,
    pack_datagrams,
    split_records,
)
from tandem.tools.pki import Role, SiteCA


def record(content: int, body: bytes, epoch: int = 0) -> bytes:
    return (bytes([content]) + b"\xfe\xfd" + epoch.to_bytes(2, "big") + bytes(6)
            + len(body).to_bytes(2, "big") + body)


def client_hello(random: bytes) -> bytes:
    body = bytes([1]) + bytes(11) + b"\xfe\xfd" + random + b"\x00\x00"
    return record(22, body)


def test_records_are_split_on_their_length_fields() -> None:
    a, b, c = record(22, b"x" * 10), record(23, b"y" * 300), record(21, b"zz")
    assert list(split_records(a + b + c)) == [a, b, c]
    assert list(split_records(a + b"\x16\xfe")) == [a, b"\x16\xfe"]


def test_records_are_packed_into_datagrams_without_splitting_one() -> None:
    records = [record(22, bytes(500)) for _ in range(5)]
    datagrams = pack_datagrams(b"".join(records), 1200)
    assert [len(d) for d in datagrams] == [1026, 1026, 513]
    assert b"".join(datagrams) == b"".join(records)
    assert pack_datagrams(record(22, bytes(1500)), 1200) == [record(22, bytes(1500))]


def test_client_hello_is_recognised_with_its_random() -> None:
    random = bytes(range(32))
    hello = client_hello(random)
    assert is_client_hello(hello) and client_hello_random(hello) == random
    assert not is_client_hello(record(22, bytes([2]) + bytes(40)))  # a ServerHello
    assert not is_client_hello(record(22, bytes([1]) + bytes(40), epoch=1))  # encrypted
    assert not looks_like_dtls(b"\x16\x03\x01" + bytes(20))  # TLS, not DTLS
    assert client_hello_random(hello[:40]) is None


def test_identity_is_the_cn_of_a_device_certificate(tmp_path: Path) -> None:
    ca = SiteCA.create(tmp_path, "acme")
    dev = x509.load_pem_x509_certificate(ca.issue("node-07", Role.DEVICE).cert_pem.read_bytes())
    gw = x509.load_pem_x509_certificate(ca.issue("gw-01", Role.GATEWAY).cert_pem.read_bytes())
    assert device_identity(dev) == "node-07"
    with pytest.raises(IdentityError) as refused:
        device_identity(gw)
    assert refused.value.reason == "not_a_device"


def test_cookies_are_bound_to_the_address() -> None:
    jar = CookieJar(b"k" * 32)
    cookie = jar.make(("10.0.0.1", 4000))
    assert jar.check(("10.0.0.1", 4000), cookie)
    assert not jar.check(("10.0.0.1", 4001), cookie)
    assert not CookieJar(b"j" * 32).check(("10.0.0.1", 4000), cookie)


def test_policy_allow_list_and_revocation() -> None:
    open_policy = DevicePolicy()
    assert open_policy.permits("anyone")
    policy = DevicePolicy(allowed={"a", "b"}, revoked={"b"})
    assert policy.permits("a") and not policy.permits("b") and not policy.permits("c")
    policy.revoke("a")
    assert not policy.permits("a")


def test_config_demands_pki_unless_plain_coap_is_enabled(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="cert_pem, key_pem, ca_pem"):
        AccessConfig()
    assert AccessConfig(insecure_plain_coap=True).port == 5684
    with pytest.raises(ValueError):
        AccessConfig(insecure_plain_coap=True, max_peers=0)
    limits = AccessConfig(cert_pem=tmp_path, key_pem=tmp_path, ca_pem=tmp_path,
                          idle_timeout_s=0.2).limits
    assert limits.sweep_interval_s == pytest.approx(0.05)


def test_stats_count_every_event_but_log_each_cause_once_per_interval(
        caplog: pytest.LogCaptureFixture) -> None:
    now = [0.0]
    stats = AccessStats(log_interval_s=10, clock=lambda: now[0])
    with caplog.at_level(logging.INFO, logger="tandem.gateway.access"):
        for _ in range(5):
            stats.count("cert_rejected", "x")
        stats.count("not_a_device")
        now[0] = 11
        stats.count("cert_rejected")
    assert stats.snapshot() == {"cert_rejected": 6, "not_a_device": 1}
    assert [r.getMessage().split(" ")[0] for r in caplog.records] == [
        "cert_rejected", "not_a_device", "cert_rejected"]
