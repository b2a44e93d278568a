"""Device access, DTLS layer: who is refused, garbage, expiry, and the peer table's bounds."""

from __future__ import annotations

import random
import socket
from pathlib import Path

import pytest
from aiocoap import CHANGED
from OpenSSL import SSL

from tandem.gateway.access.dtls import DtlsEndpoint
from tandem.gateway.access.dtls_session import SessionState
from tests.gateway.access_peers import (
    DtlsClient,
    RecordingSink,
    ServerThread,
    Site,
    libcoap_post,
    report_post,
    sample_report,
)
from tests.waiting import wait_until

pytestmark = pytest.mark.timeout(60)


def sessions(server: ServerThread) -> list[tuple[SessionState, str | None]]:
    """The endpoint's sessions, read on the server's own thread."""
    def read() -> list[tuple[SessionState, str | None]]:
        endpoint = server.server.endpoint
        assert isinstance(endpoint, DtlsEndpoint)
        return [(s.state, s.device) for s in endpoint.sessions]
    return server.call(read)


def refused_handshake(server: ServerThread, client: DtlsClient) -> None:
    with client, pytest.raises(SSL.Error):
        client.handshake()
    wait_until(lambda: sessions(server) == [], "the refused session to be dropped")


def good_request_works(server: ServerThread, site: Site) -> None:
    with DtlsClient(server.port, site.device, site.ca.cert_pem_path) as client:
        client.handshake()
        assert client.request(report_post(sample_report())).code == CHANGED


def test_device_certificate_from_another_ca_is_refused(
        server: ServerThread, site: Site, sink: RecordingSink) -> None:
    refused_handshake(server, DtlsClient(server.port, site.stranger, site.ca.cert_pem_path))
    assert server.server.stats["cert_rejected"] == 1
    assert sink.items == []


def test_client_without_certificate_is_refused(
        server: ServerThread, site: Site, sink: RecordingSink) -> None:
    refused_handshake(server, DtlsClient(server.port, None, site.ca.cert_pem_path))
    assert server.server.stats["no_client_cert"] == 1
    assert sink.items == []


def test_gateway_certificate_is_not_a_device(
        server: ServerThread, site: Site, sink: RecordingSink) -> None:
    refused_handshake(server, DtlsClient(server.port, site.other_gateway, site.ca.cert_pem_path))
    assert server.server.stats["not_a_device"] == 1
    assert sink.items == []


def test_libcoap_client_with_foreign_or_no_certificate_is_refused(
        server: ServerThread, site: Site, sink: RecordingSink, tmp_path: Path) -> None:
    payload = tmp_path / "report.cbor"
    payload.write_bytes(sample_report())
    foreign = libcoap_post(server.port, payload, site.stranger, site.ca.cert_pem_path)
    anonymous = libcoap_post(server.port, payload, None, site.ca.cert_pem_path)
    assert foreign.code is None and anonymous.code is None
    stats = server.server.stats
    wait_until(lambda: (stats["cert_rejected"], stats["no_client_cert"]) == (1, 1),
               "both refusals to be counted")
    assert sink.items == []


def test_garbage_datagrams_do_not_stop_the_server(server: ServerThread, site: Site) -> None:
    rng = random.Random(7)
    hello_header = b"\x16\xfe\xfd" + bytes(8) + b"\x00\x40\x01"
    junk = [rng.randbytes(rng.randrange(0, 1500)) for _ in range(200)]
    junk += [hello_header + rng.randbytes(rng.randrange(0, 300)) for _ in range(200)]
    junk += [b"\x17\xfe\xfd" + rng.randbytes(rng.randrange(10, 100)) for _ in range(50)]
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        for datagram in junk:
            sock.sendto(datagram, ("127.0.0.1", server.port))
    with DtlsClient(server.port, site.device, site.ca.cert_pem_path) as client:
        client.handshake()
        for datagram in junk[:50]:
            client.send_raw(datagram)  # junk from an authenticated peer's own address
        assert client.request(report_post(sample_report())).code == CHANGED
    assert server.server.stats["internal_error"] == 0


def test_idle_session_is_evicted(site: Site, sink: RecordingSink) -> None:
    with ServerThread(site.config(idle_timeout_s=0.2), sink) as server, \
            DtlsClient(server.port, site.device, site.ca.cert_pem_path) as client:
        client.handshake()  # no request: one could race the tiny timeout on a loaded machine
        wait_until(lambda: sessions(server) == [], "the idle session to be evicted")
        assert server.server.stats["idle_evicted"] == 1
        client.send(report_post(sample_report()).encode())
        wait_until(lambda: server.server.stats["unknown_peer"] == 1, "the stale record to land")
    assert sink.items == []


def test_stalled_handshake_times_out(site: Site, sink: RecordingSink) -> None:
    with ServerThread(site.config(handshake_timeout_s=0.3), sink) as server, \
            DtlsClient(server.port, site.device, site.ca.cert_pem_path) as client:
        send_hello_with_cookie(client)
        wait_until(lambda: server.server.stats["handshake_timeout"] == 1,
                   "the half-open handshake to expire")
        assert sessions(server) == []


def test_server_retransmits_its_flight(server: ServerThread, site: Site) -> None:
    with DtlsClient(server.port, site.device, site.ca.cert_pem_path) as client:
        send_hello_with_cookie(client)
        first = client._recv_raw(5)
        again = client._recv_raw(5)  # OpenSSL's first retransmission timer is 1 s
        assert first is not None and again is not None
        assert first[13] == again[13] == 2  # a ServerHello both times
        assert max(len(d) for d in client.received) <= 1200


def test_full_peer_table_refuses_new_peers(site: Site, sink: RecordingSink) -> None:
    with ServerThread(site.config(max_peers=1), sink) as server, \
            DtlsClient(server.port, site.device, site.ca.cert_pem_path) as first, \
            DtlsClient(server.port, site.device, site.ca.cert_pem_path) as second:
        first.handshake()
        send_hello_with_cookie(second)
        wait_until(lambda: server.server.stats["peer_table_full"] >= 1, "the refusal")
        assert first.request(report_post(sample_report())).code == CHANGED


def test_new_client_hello_from_a_known_address_replaces_the_session(
        server: ServerThread, site: Site, sink: RecordingSink) -> None:
    with DtlsClient(server.port, site.device, site.ca.cert_pem_path) as old:
        old.handshake()
        assert old.request(report_post(sample_report(seq=1))).code == CHANGED
        # a rebooted node: same address and port, a fresh handshake
        new = DtlsClient(server.port, site.device, site.ca.cert_pem_path, sock=old.sock)
        new.handshake()
        assert new.request(report_post(sample_report(seq=2))).code == CHANGED
    assert server.server.stats["session_replaced"] == 1
    assert [i.report.seq for i in sink.items] == [1, 2]
    assert len(sessions(server)) == 1


def send_hello_with_cookie(client: DtlsClient) -> None:
    """Run a handshake only up to the ClientHello that carries the server's cookie."""
    with pytest.raises(SSL.WantReadError):
        client.conn.do_handshake()
    client._flush()
    verify_request = client._recv_raw(5)
    assert verify_request is not None and verify_request[13] == 3  # HelloVerifyRequest
    client.conn.bio_write(verify_request)
    with pytest.raises(SSL.WantReadError):
        client.conn.do_handshake()
    client._flush()
