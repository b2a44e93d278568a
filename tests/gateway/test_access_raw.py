"""POST /raw: raw snippets block-wise (RFC 7959 Block1) over the real DTLS server, bounded.

A MicroPython node running the firmware uploads a snippet when commanded
through GET /c; a pyOpenSSL DTLS client checks the limits block by block.
"""

from __future__ import annotations

import secrets
import struct
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cbor2
import pytest
from aiocoap import CON, POST
from aiocoap.message import Message
from aiocoap.numbers.codes import Code
from aiocoap.optiontypes import BlockOption

from tandem.gateway.access.commands import CommandsResource
from tandem.gateway.access.config import DeviceGrant
from tandem.gateway.access.raw import RawResource
from tandem.gateway.config import RawCacheSection
from tandem.gateway.nodes.commands import NodeCommands
from tandem.gateway.nodes.rawcache import RawCache
from tandem.gateway.store.database import DATABASE_FILE, GatewayDatabase
from tandem.wire.raw import MAX_TRANSFER_BYTES, RawSnippet, decode_raw_record
from tests.gateway.access_peers import (
    DtlsClient,
    RecordingSink,
    ServerThread,
    Site,
)
from tests.nodeproc import NodeProcess, write_node_config
from tests.waiting import wait_until

pytestmark = pytest.mark.timeout(90)
SENSOR: dict[str, Any] = {"model": "accel", "rate_hz": 800, "samples": 128,
                          "scenario": "normal", "seed": 3}
FAST: dict[str, Any] = {"period_ms": 250, "outbox": 8,
                        "coap": {"ack_timeout_ms": 300, "max_retransmit": 2},
                        "link": {"backoff_min_ms": 50, "backoff_max_ms": 400,
                                 "handshake_timeout_ms": 1000}}


class Gateway:
    """The DTLS server with /c and /raw, a raw cache and command queues."""

    def __init__(self, tmp: Path, site: Site, per_min: int = 6, **access: Any) -> None:
        self.database = GatewayDatabase(tmp / DATABASE_FILE)
        self.cache = RawCache(self.database, RawCacheSection())
        self.commands = NodeCommands()
        self.thread = ServerThread(site.config(**access), RecordingSink())
        server = self.thread.server
        server.resources[("c",)] = CommandsResource(self.commands, server.policy, server.stats)
        server.resources[("raw",)] = RawResource(self.cache, server.policy, server.stats,
                                                 per_device_per_min=per_min)

    def close(self) -> None:
        self.thread.__exit__()
        self.database.close()

    def snippets(self) -> int:
        return int(self.database.call_sync(self.cache.totals_sync)[0])


@pytest.fixture
def gateway(tmp_path: Path, site: Site) -> Iterator[Gateway]:
    running = Gateway(tmp_path, site, per_min=2)
    running.thread.__enter__()
    yield running
    running.close()


def block(num: int, more: bool, payload: bytes, szx: int = 4, size1: int | None = None,
          **options: Any) -> Message:
    """One CON POST /raw block as a node sends it."""
    options = {"content_format": 60, **options}
    message = Message(code=POST, uri_path=("raw",), payload=payload,
                      block1=BlockOption.BlockwiseTuple(num, more, szx), **options)
    if size1 is not None:
        message.opt.size1 = size1
    message.mtype, message.token = CON, secrets.token_bytes(4)
    message.mid = secrets.randbelow(65536)
    return message


def body(frames: int = 64) -> bytes:
    samples = struct.pack(f"<{3 * frames}h", *([3, -2, 256] * frames))
    return cbor2.dumps({1: 7, 2: 0xB007, 3: 1_764_230_400_000, 4: 800, 5: 1 / 256, 6: "xyz",
                        7: samples}, canonical=True)


def send_whole(client: DtlsClient, data: bytes, szx: int = 4) -> list[Message]:
    size = 16 << szx
    chunks = [data[i:i + size] for i in range(0, len(data), size)]
    return [client.request(block(n, n + 1 < len(chunks), chunk, szx,
                                 len(data) if n == 0 else None))
            for n, chunk in enumerate(chunks)]


def test_a_micropython_node_commanded_through_c_uploads_its_window_block_by_block(
        tmp_path: Path, site: Site, gateway: Gateway) -> None:
    async def ask() -> None:
        gateway.commands.send("node-01", {"raw": True})

    gateway.thread.run(ask())
    config = write_node_config(tmp_path / "node", site.device, gateway.thread.port,
                               sensor=SENSOR, commands={"poll_ms": 250},
                               raw={"enabled": True, "block_szx": 4}, **FAST)
    with NodeProcess(config, heap="144K") as node:
        sent = node.wait_for("raw_sent", timeout=30)
    assert sent["bytes"] > 3 * 256  # more than three 256-byte blocks
    snippet = gateway.database.call_sync(_only, gateway)
    assert (snippet.device, snippet.rate_hz, snippet.axes, snippet.frames) == \
        ("node-01", 800, "xyz", 128)
    z = struct.unpack(f"<{3 * snippet.frames}h", snippet.samples)[2::3]
    assert 230 < sum(z) / len(z) < 280  # gravity on z: 1 g = 256 LSB
    assert gateway.thread.server.stats["raw_stored"] == 1


def _only(gateway: Gateway) -> RawSnippet:
    (row,) = gateway.database.connection.execute("SELECT body FROM raw_cache").fetchall()
    return decode_raw_record(cbor2.loads(row[0]))


def test_blocks_are_continued_then_changed_and_the_snippet_is_cached(
        site: Site, gateway: Gateway) -> None:
    with DtlsClient(gateway.thread.port, site.device, site.ca.cert_pem_path) as client:
        client.handshake()
        replies = send_whole(client, body())
    assert [r.code for r in replies[:-1]] == [Code.CONTINUE] * (len(replies) - 1)
    assert replies[-1].code == Code.CHANGED
    assert replies[-1].opt.block1.block_number == len(replies) - 1
    assert gateway.snippets() == 1


def test_over_the_size_limit_is_refused_before_it_is_spooled(
        site: Site, gateway: Gateway) -> None:
    with DtlsClient(gateway.thread.port, site.device, site.ca.cert_pem_path) as client:
        client.handshake()
        announced = client.request(block(0, True, bytes(256), size1=MAX_TRANSFER_BYTES + 1))
        assert announced.code == Code.REQUEST_ENTITY_TOO_LARGE
        assert announced.opt.size1 == MAX_TRANSFER_BYTES
        past_end = client.request(block(MAX_TRANSFER_BYTES // 1024, True, bytes(1024), szx=6))
        assert past_end.code == Code.REQUEST_ENTITY_TOO_LARGE
        not_cbor = client.request(block(0, False, bytes(100), content_format=0))
        assert not_cbor.code == Code.UNSUPPORTED_CONTENT_FORMAT
        garbage = client.request(block(0, False, b"\xa1\x01"))
        assert garbage.code == Code.BAD_REQUEST
    assert gateway.snippets() == 0


def test_transfers_past_the_rate_limit_are_told_when_to_come_back(
        site: Site, gateway: Gateway) -> None:
    with DtlsClient(gateway.thread.port, site.device, site.ca.cert_pem_path) as client:
        client.handshake()
        assert send_whole(client, body(16))[-1].code == Code.CHANGED
        assert send_whole(client, body(16))[-1].code == Code.CHANGED
        third = client.request(block(0, True, body(64)[:256], size1=len(body(64))))
    assert third.code == Code.TOO_MANY_REQUESTS and 1 <= third.opt.max_age <= 61
    assert gateway.snippets() == 2


def test_a_device_not_granted_raw_is_forbidden(tmp_path: Path, site: Site) -> None:
    running = Gateway(tmp_path, site, grant=(DeviceGrant("node-01", ("/r",)),))
    running.thread.__enter__()
    try:
        with DtlsClient(running.thread.port, site.device, site.ca.cert_pem_path) as client:
            client.handshake()
            assert client.request(block(0, False, body(8))).code == Code.FORBIDDEN
        wait_until(lambda: running.thread.server.stats["device_forbidden"] == 1, "counted")
    finally:
        running.close()
