"""Device access end to end: real sockets, real DTLS handshakes, reports into a sink."""

from __future__ import annotations

import math
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import cbor2
import pytest
from aiocoap import CHANGED
from aiocoap.message import Message
from aiocoap.numbers.codes import Code

from tests.gateway.access_peers import (
    DtlsClient,
    RecordingSink,
    ServerThread,
    Site,
    libcoap_post,
    report_post,
    sample_report,
)

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def client(server: ServerThread, site: Site) -> Iterator[DtlsClient]:
    with DtlsClient(server.port, site.device, site.ca.cert_pem_path) as peer:
        peer.handshake()
        yield peer


def test_libcoap_client_report_reaches_the_sink_as_the_certificate_cn(
        server: ServerThread, site: Site, sink: RecordingSink, tmp_path: Path) -> None:
    payload = tmp_path / "report.cbor"
    payload.write_bytes(sample_report(seq=3, temp=21.5, rh=40))
    before = int(time.time() * 1000)
    result = libcoap_post(server.port, payload, site.device, site.ca.cert_pem_path)
    assert result.code == "2.04", result.output
    [item] = sink.items
    assert item.device == "node-01"
    assert (item.report.seq, item.report.boot) == (3, 0xB007)
    assert item.report.values == {"temp": 21.5, "rh": 40.0}
    assert before <= item.received_ms <= int(time.time() * 1000)


def test_python_client_report_gets_2_04(client: DtlsClient, sink: RecordingSink) -> None:
    reply = client.request(report_post(sample_report(temp=-3.25)))
    assert reply.code == CHANGED
    assert [(i.device, i.report.values) for i in sink.items] == [("node-01", {"temp": -3.25})]


def test_malformed_cbor_gets_4_00_is_counted_and_the_next_report_is_served(
        server: ServerThread, client: DtlsClient, sink: RecordingSink) -> None:
    reply = client.request(report_post(b"\xff\x00\x01"))
    assert reply.code == Code.BAD_REQUEST
    assert reply.payload.startswith(b"cbor")
    reply = client.request(report_post(b"\xa1\x09\x01"))  # valid CBOR, wrong schema
    assert reply.code == Code.BAD_REQUEST and reply.payload.startswith(b"schema")
    assert client.request(report_post(sample_report())).code == CHANGED
    assert len(sink.items) == 1
    stats = server.server.stats
    assert (stats["bad_report_cbor"], stats["bad_report_schema"]) == (1, 1)


def _poison(**fields: object) -> bytes:
    report = {1: 7, 2: 0xB007, 3: time.time_ns() // 1_000_000, 4: {"temp": 21.5}}
    report.update({{"seq": 1, "t": 3, "values": 4}[k]: v for k, v in fields.items()})
    return cbor2.dumps(report)


POISON = {
    "t = 2^63": (_poison(t=2**63), b"schema"),
    "t = 2^64-1": (_poison(t=2**64 - 1), b"schema"),
    "t = 2^63-1": (_poison(t=2**63 - 1), b"schema"),
    "t a year ahead": (_poison(t=time.time_ns() // 1_000_000 + 365 * 86_400_000), b"time"),
    "t in 1990": (_poison(t=631_152_000_000), b"time"),
    "seq = 2^40": (_poison(seq=2**40), b"schema"),
    "value 1e308": (_poison(values={"temp": 1e308}), b"schema"),
    "value -1e16": (_poison(values={"temp": -1e16}), b"schema"),
    "value NaN": (_poison(values={"temp": math.nan}), b"schema"),
    "value inf": (_poison(values={"temp": math.inf}), b"schema"),
    "value 2^70": (_poison(values={"temp": 2**70}), b"schema"),
}


@pytest.mark.parametrize("payload,reason", POISON.values(), ids=list(POISON))
def test_out_of_range_report_gets_4_00_naming_the_field_and_is_not_taken(
        server: ServerThread, client: DtlsClient, sink: RecordingSink, payload: bytes,
        reason: bytes) -> None:
    reply = client.request(report_post(payload))
    assert reply.code == Code.BAD_REQUEST
    assert reply.payload.startswith(reason)
    assert sink.items == []
    assert server.server.stats[f"bad_report_{reason.decode()}"] == 1
    assert client.request(report_post(sample_report())).code == CHANGED


def test_full_sink_gets_5_03_with_max_age_1(client: DtlsClient, sink: RecordingSink) -> None:
    sink.accepting = False
    reply = client.request(report_post(sample_report()))
    assert reply.code == Code.SERVICE_UNAVAILABLE
    assert reply.opt.max_age == 1


def test_oversized_report_gets_4_13(client: DtlsClient, sink: RecordingSink) -> None:
    reply = client.request(report_post(bytes(1025)))
    assert reply.code == Code.REQUEST_ENTITY_TOO_LARGE
    assert reply.opt.size1 == 1024
    assert sink.items == []


def test_other_content_format_gets_4_15(client: DtlsClient) -> None:
    reply = client.request(report_post(b'{"t": 1}', content_format=50))
    assert reply.code == Code.UNSUPPORTED_CONTENT_FORMAT


def test_report_without_content_format_gets_4_15(client: DtlsClient,
                                                 sink: RecordingSink) -> None:
    message = report_post(sample_report())
    message.opt.content_format = None
    reply = client.request(message)
    assert reply.code == Code.UNSUPPORTED_CONTENT_FORMAT
    assert reply.payload == b"Content-Format must be 60"
    assert sink.items == []


def test_device_outside_the_allow_list_gets_4_03(site: Site, sink: RecordingSink) -> None:
    with ServerThread(site.config(allowed_devices=frozenset({"node-99"})), sink) as server, \
            DtlsClient(server.port, site.device, site.ca.cert_pem_path) as client:
        client.handshake()
        assert client.request(report_post(sample_report())).code == Code.FORBIDDEN
        assert server.server.stats["device_forbidden"] == 1
    assert sink.items == []


def test_revoked_device_gets_4_03_without_a_restart(
        server: ServerThread, client: DtlsClient, sink: RecordingSink) -> None:
    assert client.request(report_post(sample_report(seq=1))).code == CHANGED
    server.call(lambda: server.server.policy.revoke("node-01"))
    assert client.request(report_post(sample_report(seq=2))).code == Code.FORBIDDEN
    assert [i.report.seq for i in sink.items] == [1]


def test_retransmitted_con_reaches_the_sink_once(client: DtlsClient, sink: RecordingSink) -> None:
    message = report_post(sample_report(), mid=4242)
    first = client.request(message)
    again = client.request(message)  # same CoAP bytes in a new DTLS record, as a node resends
    assert first.code == again.code == CHANGED
    assert again.mid == 4242
    assert len(sink.items) == 1


def test_replayed_dtls_record_is_dropped(client: DtlsClient, sink: RecordingSink) -> None:
    client.request(report_post(sample_report(seq=1)))
    client.send_raw(client.sent[-1])  # byte-identical replay: DTLS anti-replay drops it
    later = report_post(sample_report(seq=2))
    client.send(later.encode())
    first_reply = client.recv()  # replies come in order: an answer to the replay would be first
    assert first_reply is not None
    assert Message.decode(first_reply).mid == later.mid
    assert [i.report.seq for i in sink.items] == [1, 2]


def test_unparsable_coap_is_ignored_and_counted(
        server: ServerThread, client: DtlsClient) -> None:
    client.send(b"\x7f\x01")  # CoAP version 1 with a token length of 15
    assert client.request(report_post(sample_report())).code == CHANGED
    assert server.server.stats["decode_error"] == 1


def test_plain_coap_only_when_enabled(site: Site, sink: RecordingSink) -> None:
    config = site.config(insecure_plain_coap=True, cert_pem=None, key_pem=None, ca_pem=None)
    with ServerThread(config, sink) as server, \
            socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.connect(("127.0.0.1", server.port))
        sock.settimeout(5)
        request = report_post(sample_report())
        sock.send(request.encode())
        reply = Message.decode(sock.recv(2048))
        assert (reply.mid, reply.code) == (request.mid, CHANGED)
        local_port = sock.getsockname()[1]
    assert [i.device for i in sink.items] == [f"insecure:127.0.0.1:{local_port}"]


def test_stop_closes_the_socket_and_leaves_no_task(site: Site, sink: RecordingSink) -> None:
    with ServerThread(site.config(), sink) as server, \
            DtlsClient(server.port, site.device, site.ca.cert_pem_path) as client:
        client.handshake()
        assert client.request(report_post(sample_report())).code == CHANGED
        port = server.port
    assert server.leftover_tasks == set()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", port))  # free again


def test_measure_round_trip_and_handshake(server: ServerThread, site: Site,
                                          record_property: pytest.RecordProperty) -> None:
    """Measures (does not assert) handshake time, CON round trip and stop-and-wait rate."""
    handshakes = []
    for _ in range(5):
        with DtlsClient(server.port, site.device, site.ca.cert_pem_path) as peer:
            start = time.perf_counter()
            peer.handshake()
            handshakes.append(time.perf_counter() - start)
    with DtlsClient(server.port, site.device, site.ca.cert_pem_path) as peer:
        peer.handshake()
        payload = sample_report()
        count, start = 0, time.perf_counter()
        while time.perf_counter() - start < 1.0:
            assert peer.request(report_post(payload)).code == CHANGED
            count += 1
        elapsed = time.perf_counter() - start
    figures = {"handshake_ms_median": sorted(handshakes)[2] * 1000,
               "con_round_trip_ms": elapsed / count * 1000, "requests_per_s": count / elapsed}
    for name, value in figures.items():
        record_property(name, round(value, 2))
    print("access measurements:", {k: round(v, 2) for k, v in figures.items()})
