"""The gateway's side of raw snippets on demand: answers from the cache, failures reported.

The cloud is an httpx.MockTransport here; tests/e2e/test_raw_on_demand.py runs
the real one with a MicroPython node.
"""

from __future__ import annotations

import asyncio
import base64
import json
import struct
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import cbor2
import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from tandem.gateway.config import RawCacheSection
from tandem.gateway.nodes.commands import NodeCommands
from tandem.gateway.nodes.rawcache import RawCache
from tandem.gateway.nodes.rawrequests import RawRequests
from tandem.gateway.store.database import DATABASE_FILE, GatewayDatabase
from tandem.gateway.store.outbox import Outbox, Priority
from tandem.wire.batch import Summary, decode_record
from tandem.wire.cose import SoftwareSigner
from tandem.wire.gwrequest import open_request
from tandem.wire.raw import RawSnippet

T0 = 1_764_230_400_000
SNIPPET = RawSnippet("node-01", T0, 800, 1 / 256, "xyz", struct.pack("<6h", 1, 2, 256, 1, 2, 256))
KEY = ec.generate_private_key(ec.SECP256R1())


class Cloud:
    """Answers the gateway's signed polls with `listed` and records its failure reports."""

    def __init__(self) -> None:
        self.listed: list[dict[str, Any]] = []
        self.failures: list[dict[str, Any]] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        if request.url.path == "/edge/v1/requests":
            signed = base64.urlsafe_b64decode(request.headers["X-Tandem-Signed"] + "==")
            assert open_request(signed, self._key, "edge-requests", T0, 10**15).gateway == "gw-01"
            return httpx.Response(200, json={"requests": self.listed})
        report = open_request(request.content, self._key, "request-result", T0, 10**15)
        self.failures.append(report.body)
        return httpx.Response(200, json={"status": "recorded"})

    @staticmethod
    def _key(kid: str) -> ec.EllipticCurvePublicKey:
        return KEY.public_key()


@pytest.fixture
def db(tmp_path: Path) -> Iterator[GatewayDatabase]:
    database = GatewayDatabase(tmp_path / DATABASE_FILE)
    yield database
    database.close()


def run(db: GatewayDatabase, cloud: Cloud,
        scenario: Callable[[RawRequests], Any], **config: float) -> Any:
    async def main() -> Any:
        async def offload(fn: Callable[..., Any], *args: Any) -> Any:
            return fn(*args)

        http = httpx.AsyncClient(base_url="http://cloud", transport=httpx.MockTransport(cloud))
        requests = RawRequests("gw-01", RawCache(db, RawCacheSection(**config)),  # type: ignore[arg-type]
                               NodeCommands(), Outbox(db), SoftwareSigner(KEY), http, offload,
                               RawCacheSection(**config))  # type: ignore[arg-type]
        try:
            return await scenario(requests)
        finally:
            await requests.close()

    return asyncio.run(main())


def filed(db: GatewayDatabase) -> list[tuple[int, Any]]:
    rows = db.call_sync(lambda: db.connection.execute(
        "SELECT priority, body FROM records ORDER BY id").fetchall())
    return [(p, decode_record(cbor2.loads(b))) for p, b in rows]


def test_a_cached_window_is_filed_at_bulk_priority_naming_the_request_once(
        db: GatewayDatabase) -> None:
    cloud = Cloud()
    cloud.listed = [{"id": 5, "kind": "raw", "device": "node-01", "t": T0 + 50}]

    async def scenario(requests: RawRequests) -> None:
        await requests.cache.put(SNIPPET)
        assert [r.id for r in await requests.poll_once()] == [5]
        while 5 not in requests.answered:
            await asyncio.sleep(0.01)
        assert await requests.poll_once() == []  # still listed until the cloud has it
        cloud.listed = []
        await requests.poll_once()
        assert requests.answered == {}

    run(db, cloud, scenario)
    assert filed(db) == [(Priority.BULK, RawSnippet(**{**_fields(SNIPPET), "request": 5}))]
    assert cloud.failures == []


def test_without_a_cached_window_or_a_connected_node_the_request_is_reported_failed(
        db: GatewayDatabase) -> None:
    cloud = Cloud()
    cloud.listed = [{"id": 6, "kind": "raw", "device": "node-02", "t": T0}]

    async def scenario(requests: RawRequests) -> str:
        (request,) = await requests.poll_once()
        return await requests.answer(request)

    assert run(db, cloud, scenario) == "no cached snippet and the node is not connected"
    assert cloud.failures == [{"id": 6, "ok": False,
                               "reason": "no cached snippet and the node is not connected"}]
    assert filed(db) == []


def test_a_connected_node_is_asked_and_its_next_window_answers(db: GatewayDatabase) -> None:
    cloud = Cloud()
    cloud.listed = [{"id": 7, "kind": "raw", "device": "node-01", "t": T0 - 600_000}]

    async def scenario(requests: RawRequests) -> str:
        requests.commands.poll("node-01", 0)  # the node polls: it is connected
        assert [r.id for r in await requests.poll_once()] == [7]
        while requests.commands.waiting("node-01") == 0:
            await asyncio.sleep(0.01)
        assert cbor2.loads(requests.commands.poll("node-01", 0)) == {"id": 1, "raw": True}
        await requests.cache.put(SNIPPET)  # what the node's POST /raw does
        while 7 not in requests.answered:
            await asyncio.sleep(0.01)
        return requests.answered[7]

    assert run(db, cloud, scenario, request_wait_s=10) == "node"
    assert [r.request for _, r in filed(db)] == [7]


def test_the_outbox_seals_a_raw_record_alone(db: GatewayDatabase) -> None:
    outbox = Outbox(db)
    summary = Summary("node-01", "temp", T0, T0 + 1000, 1, 1.0, 1.0, 1.0, 1.0)
    db.call_sync(outbox.put_sync, [SNIPPET], Priority.BULK)
    db.call_sync(outbox.put_sync, [summary], Priority.SUMMARY)
    sealed: list[list[Any]] = []

    def build(seq: int, records: Any) -> bytes:
        sealed.append(list(records))
        return json.dumps(seq).encode()

    for _ in range(2):
        batch = db.call_sync(outbox.seal_or_pending_sync, 500, build, T0)
        assert batch is not None
        db.call_sync(outbox.confirm_sync, batch.seq)
    assert sealed == [[summary], [SNIPPET]]


def _fields(snippet: RawSnippet) -> dict[str, Any]:
    return {k: getattr(snippet, k) for k in RawSnippet.__slots__}
