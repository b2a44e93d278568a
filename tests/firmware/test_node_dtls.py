"""The node end to end in real MicroPython (64 KB heap) against independent DTLS peers.

The peer is OpenSSL (pyOpenSSL) + aiocoap's codec, or libcoap's coap-server;
never the project's gateway, so both sides of the contract are checked.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from aiocoap import ACK, CHANGED, CON, POST, Message
from aiocoap.numbers.codes import Code

from tandem.tools.pki import Identity, Role, SiteCA
from tandem.wire.report import Report, decode_report, encode_report
from tests.firmware.conftest import PeerFactory
from tests.firmware.dtls_peer import coap_message, reply
from tests.nodeproc import NodeProcess, write_node_config
from tests.ports import free_udp_port

pytestmark = pytest.mark.timeout(90)

FAST: dict[str, Any] = {"period_ms": 100, "coap": {"ack_timeout_ms": 300, "max_retransmit": 2},
        "link": {"backoff_min_ms": 50, "backoff_max_ms": 400, "handshake_timeout_ms": 3000}}


def _start(nodes: list[NodeProcess], config: Path) -> NodeProcess:
    node = NodeProcess(config)
    nodes.append(node)
    return node.start()


def _seqs(peer_requests: list[Message]) -> list[int]:
    return [decode_report(m.payload).seq for m in peer_requests]


def test_reports_are_acknowledged_over_mutual_dtls(
        tmp_path: Path, node_id: Identity, start_peer: PeerFactory,
        nodes: list[NodeProcess], sim: ModuleType) -> None:
    peer = start_peer()
    cfg = write_node_config(tmp_path, node_id, peer.port, max_reports=8,
                            sensor={"scenario": "bearing_fault", "seed": 42}, **FAST)
    node = _start(nodes, cfg)
    assert node.wait_exit(30) == 0, node.output
    boot = node.wait_for("boot")["boot"]
    connected = node.wait_for("connected")
    acks = node.of("ack")
    done = node.wait_for("exit")
    assert [a["seq"] for a in acks] == list(range(1, 9))
    assert peer.peer_names == ["node-01"] and peer.handshakes == 1
    assert _seqs(peer.requests) == list(range(1, 9))  # no duplicates on a clean link
    expected = [0.0, 0.0]
    for request, ack in zip(peer.requests, acks, strict=True):
        assert request.mtype == CON and request.code == POST
        assert request.opt.uri_path == ("r",) and request.opt.content_format == 60
        report = decode_report(request.payload)
        assert report.boot == boot == ack["boot"] and report.t_ms == ack["t"] > 0
        sim.sample(42, "bearing_fault", report.seq, expected)
        assert report.values == {"temp": expected[0], "vib": expected[1]}
        assert request.payload == encode_report(Report(report.seq, boot, report.t_ms,
                                                        {"temp": expected[0], "vib": expected[1]}))
        assert ack["code"] == "2.04"
        assert ack["values"] == pytest.approx({"temp": expected[0], "vib": expected[1]})
    rtts = [a["rtt_ms"] for a in acks]
    print(f"\nhandshake_ms={connected['handshake_ms']} rtt_ms(max)={max(rtts)} "
          f"peak_heap={done['peak_heap']} of {done['heap_size']}")
    assert "MemoryError" not in node.output and done["peak_heap"] < done["heap_size"]


def test_long_run_fits_a_64k_heap(tmp_path: Path, node_id: Identity, start_peer: PeerFactory,
                                  nodes: list[NodeProcess]) -> None:
    peer = start_peer()
    cfg = write_node_config(tmp_path, node_id, peer.port, max_reports=400,
                            **{**FAST, "period_ms": 10})
    node = _start(nodes, cfg)
    assert node.wait_exit(60) == 0, node.output
    done = node.wait_for("exit")
    rtts = sorted(a["rtt_ms"] for a in node.of("ack"))
    print(f"\n400 reports: rtt_ms median={rtts[len(rtts) // 2]} max={rtts[-1]} "
          f"peak_heap={done['peak_heap']} live_heap={done['live_heap']} of {done['heap_size']}")
    assert done["reports"] == 400 and "MemoryError" not in node.output
    assert _seqs(peer.requests) == list(range(1, 401))


def test_interoperates_with_libcoap_server(
        tmp_path: Path, pki: SiteCA, gateway_id: Identity, node_id: Identity,
        nodes: list[NodeProcess], coap_server_binary: str) -> None:
    plain = free_udp_port()
    # libcoap listens for DTLS on port+1; the node retries until it is up.
    cfg = write_node_config(tmp_path / "n", node_id, plain + 1, max_reports=3, **FAST)
    server = subprocess.Popen(
        [coap_server_binary, "-A", "127.0.0.1", "-p", str(plain), "-d", "4",
         "-c", str(gateway_id.cert_pem), "-j", str(gateway_id.key_pem),
         "-C", str(pki.cert_pem_path), "-v", "3"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        node = _start(nodes, cfg)
        assert node.wait_exit(30) == 0, node.output
        acks = node.of("ack")
        assert [a["seq"] for a in acks] == [1, 2, 3]
        # coap-server creates /r on the first POST (2.01), then updates it.
        assert all(a["code"] in ("2.01", "2.04") for a in acks)
    finally:
        server.kill()
        server.communicate(timeout=10)


def test_node_from_another_ca_is_refused(
        tmp_path: Path, pki: SiteCA, start_peer: PeerFactory, nodes: list[NodeProcess]) -> None:
    rogue = SiteCA.create(tmp_path / "rogue", "evil").issue("node-01", Role.DEVICE)
    peer = start_peer()
    cfg = write_node_config(tmp_path / "n", rogue, peer.port, **FAST)
    shutil.copyfile(pki.directory / "ca.der", cfg.parent / "ca.der")  # it trusts the gateway
    node = _start(nodes, cfg)
    peer.wait(lambda p: len(p.handshake_failures) >= 2)
    node.wait_for("error", where=lambda e: e["error"] == "handshake")
    assert peer.requests == [] and peer.handshakes == 0
    assert node.of("ack") == [] and node.returncode is None  # still trying, not crashed


def test_gateway_from_another_ca_is_refused_by_node(
        tmp_path: Path, node_id: Identity, start_peer: PeerFactory,
        nodes: list[NodeProcess]) -> None:
    rogue = SiteCA.create(tmp_path / "rogue", "evil")
    fake_gw = rogue.issue("gw-01", Role.GATEWAY, ("127.0.0.1",))
    peer = start_peer(identity=fake_gw, ca_pem=rogue.cert_pem_path)
    node = _start(nodes, write_node_config(tmp_path / "n", node_id, peer.port, **FAST))
    first = node.wait_for("error", where=lambda e: e["error"] == "handshake")
    node.wait_for("error", where=lambda e: e["error"] == "handshake" and e is not first)  # retried
    assert "verif" in first["detail"] or "signed" in first["detail"], first
    assert peer.requests == [] and node.of("ack") == []


def test_gateway_with_wrong_name_is_refused_by_node(
        tmp_path: Path, node_id: Identity, start_peer: PeerFactory,
        nodes: list[NodeProcess]) -> None:
    peer = start_peer()
    node = _start(nodes, write_node_config(tmp_path / "n", node_id, peer.port,
                                           gateway_name="gw-02", **FAST))
    err = node.wait_for("error", where=lambda e: e["error"] == "handshake")
    assert "CN" in err["detail"] or "name" in err["detail"].lower()
    assert peer.requests == []


def test_outbox_keeps_reports_through_an_outage_and_sends_them_in_order(
        tmp_path: Path, node_id: Identity, start_peer: PeerFactory,
        nodes: list[NodeProcess]) -> None:
    port = free_udp_port()  # nothing listens yet: the gateway is down
    cfg = write_node_config(tmp_path / "n", node_id, port, outbox=6, **FAST)
    node = _start(nodes, cfg)
    dropped = node.wait_for("dropped", seq=3)  # sampling went on; oldest dropped
    assert node.of("ack") == [] and dropped["reason"] == "outbox full"
    assert node.of("error")  # connection attempts failed and were retried
    peer = start_peer(port=port)
    node.wait_for("ack", timeout=20, where=lambda e: e["seq"] >= 25)
    node.stop()
    seqs = _seqs(peer.requests)
    assert seqs == sorted(set(seqs)), "sent in order, each once"
    # Report 1 was loaded for sending when the first connection was tried and
    # is kept; the oldest queued behind it were dropped, and only those.
    assert seqs[0] == 1
    first = seqs[1]
    assert first >= 4 and seqs[1:] == list(range(first, seqs[-1] + 1))
    assert [e["seq"] for e in node.of("dropped")] == list(range(2, first))


def test_gateway_restart_loses_nothing_and_duplicates_nothing(
        tmp_path: Path, node_id: Identity, start_peer: PeerFactory,
        nodes: list[NodeProcess]) -> None:
    peer = start_peer()
    node = _start(nodes, write_node_config(tmp_path / "n", node_id, peer.port, **FAST))
    node.wait_for("ack", seq=5)
    peer.stop()  # vanishes without close_notify, like a crash
    node.wait_for("error", where=lambda e: e["error"] in ("timeout", "recv", "send"))
    second = start_peer(port=peer.port)
    last = node.wait_for("ack", timeout=30, where=lambda e: e["seq"] >= 30)
    node.stop()
    acked = [a["seq"] for a in node.of("ack")]
    assert acked == list(range(1, last["seq"] + 1)) or acked == sorted(set(acked))
    assert len(node.of("connected")) >= 2 and second.handshakes >= 1
    assert set(_seqs(peer.requests)) | set(_seqs(second.requests)) >= set(acked)
    assert len(set(acked)) == len(acked)


def test_retransmission_keeps_message_id_and_ignores_junk(
        tmp_path: Path, node_id: Identity, start_peer: PeerFactory,
        nodes: list[NodeProcess]) -> None:
    seen: set[int] = set()

    def lossy(request: Message) -> list[bytes]:
        if request.mid not in seen:  # "lose" every first transmission
            seen.add(request.mid)
            return []
        junk = [b"\x00", b"garbage that is not coap",
                coap_message(ACK, CHANGED, (request.mid + 1) & 0xFFFF, request.token).encode(),
                coap_message(ACK, CHANGED, request.mid, b"\x00wrong").encode(),
                b"\x40\x44\x00\x01\xd0"]  # truncated option
        return [*junk, reply(request, CHANGED)]

    peer = start_peer(lossy)
    node = _start(nodes, write_node_config(tmp_path / "n", node_id, peer.port,
                                           max_reports=3, log="debug", **FAST))
    assert node.wait_exit(30) == 0, node.output
    assert [a["seq"] for a in node.of("ack")] == [1, 2, 3]
    mids = [m.mid for m in peer.requests]
    assert len(mids) == 6 and mids[0::2] == mids[1::2]  # each resent once, same MID
    assert [m.payload for m in peer.requests[0::2]] == [m.payload for m in peer.requests[1::2]]
    assert node.wait_for("exit")["ignored"] >= 3 * 5


def test_busy_bad_request_and_separate_response(
        tmp_path: Path, node_id: Identity, start_peer: PeerFactory,
        nodes: list[NodeProcess]) -> None:
    calls: list[int] = []

    def moody(request: Message) -> list[bytes]:
        seq = decode_report(request.payload).seq
        calls.append(seq)
        if seq == 1 and calls.count(1) == 1:
            return [reply(request, Code.SERVICE_UNAVAILABLE)]
        if seq == 2:
            return [reply(request, Code.BAD_REQUEST, b"schema: nope")]
        if seq == 3:  # empty ACK now, the response later as its own CON
            empty = coap_message(ACK, Code.EMPTY, request.mid).encode()
            late = coap_message(CON, CHANGED, 4242, request.token).encode()
            return [empty, late, late]  # the duplicate must not count twice
        return [reply(request, CHANGED)]

    peer = start_peer(moody)
    node = _start(nodes, write_node_config(tmp_path / "n", node_id, peer.port,
                                           max_reports=3, **FAST))
    assert node.wait_exit(30) == 0, node.output
    assert node.wait_for("busy")["seq"] == 1
    rejected = node.wait_for("rejected")
    assert (rejected["seq"], rejected["code"], rejected["diag"]) == (2, "4.00", "schema: nope")
    assert [a["seq"] for a in node.of("ack")] == [1, 3, 4]
    assert calls[:4] == [1, 1, 2, 3] and calls.count(2) == 1
    # The separate response (and its duplicate) was acknowledged each time.
    assert [(m.mtype, m.mid) for m in peer.others] == [(ACK, 4242), (ACK, 4242)]
