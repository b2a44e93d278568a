"""Specification of the uplink: a batch is deleted only after the cloud confirmed it."""

import asyncio
import gzip
import json
from collections.abc import Awaitable, Callable, Iterator
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from tandem.gateway.cloudlink.backoff import Backoff
from tandem.gateway.cloudlink.client import CloudEndpoint
from tandem.gateway.cloudlink.uplink import Outcome, Uplink
from tandem.gateway.config import UplinkSection
from tandem.gateway.metrics import GatewayMetrics
from tandem.gateway.store.database import GatewayDatabase
from tandem.gateway.store.outbox import Outbox, Priority
from tandem.tools.pki import Role, SiteCA
from tandem.wire.batch import Event, Summary, decode_batch
from tandem.wire.cose import SoftwareSigner, verify1
from tests.httpsserver import HttpsServer
from tests.ports import free_port

KEY = ec.generate_private_key(ec.SECP256R1())


class ScriptedCloud:
    """An HTTPS server answering ingest posts from a script of status codes."""

    def __init__(self, tmp: Path, script: list[int], port: int = 0) -> None:
        pki = tmp / "pki"
        ca = SiteCA.load(pki) if (pki / "ca.pem").exists() else SiteCA.create(pki, "test")
        server = ca.issue("cloud", Role.SERVER, ("127.0.0.1",), overwrite=True)
        self.ca_path = ca.cert_pem_path
        self.script = script
        self.received: list[bytes] = []
        self.wire_bytes: list[int] = []
        self.encodings: list[str] = []
        cloud = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                cloud.wire_bytes.append(len(body))
                cloud.encodings.append(self.headers.get("Content-Encoding", "identity"))
                if self.headers.get("Content-Encoding") == "gzip":
                    body = gzip.decompress(body)
                cloud.received.append(body)
                status = cloud.script.pop(0) if cloud.script else 200
                payload = json.dumps({"status": "stored"} if status == 200 else
                                     {"error": "x", "detail": "scripted"}).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *args: object) -> None:
                pass

        self._server = HttpsServer(Handler, server.cert_pem, server.key_pem, port)
        self.httpd = self._server.httpd

    @property
    def url(self) -> str:
        return self._server.url

    def close(self) -> None:
        self._server.close()


@pytest.fixture
def cloud(tmp_path: Path) -> Iterator[ScriptedCloud]:
    server = ScriptedCloud(tmp_path, [])
    yield server
    server.close()


def _endpoint(config: UplinkSection) -> CloudEndpoint:
    assert config.ca is not None
    return CloudEndpoint(config.url, config.ca, config.timeout_s)


def _summary(i: int) -> Summary:
    return Summary("n1", "temp", i * 1000, i * 1000 + 1000, 1, 1.0, 1.0, 1.0, 1.0)


def _run(cloud: ScriptedCloud, tmp: Path, steps: int) -> tuple[list[Outcome], Outbox]:
    async def scenario() -> list[Outcome]:
        config = UplinkSection(url=cloud.url, ca=cloud.ca_path, batch_max_records=2)
        uplink = Uplink(config, _endpoint(config), "gw-01", outbox, SoftwareSigner(KEY),
                        GatewayMetrics())
        await outbox.put([_summary(i) for i in range(3)], Priority.SUMMARY)
        outcomes = [await uplink.deliver_one() for _ in range(steps)]
        await uplink.close()
        return outcomes

    outbox = Outbox(GatewayDatabase(tmp / "gateway.db"))
    return asyncio.run(scenario()), outbox


def test_batches_are_signed_numbered_and_deleted_after_200(cloud: ScriptedCloud,
                                                           tmp_path: Path) -> None:
    outcomes, outbox = _run(cloud, tmp_path, 3)
    assert outcomes == [Outcome.DELIVERED, Outcome.DELIVERED, Outcome.EMPTY]
    batches = [decode_batch(verify1(b, lambda kid: KEY.public_key()).payload)
               for b in cloud.received]
    assert [(b.gateway, b.seq, len(b.records)) for b in batches] == [("gw-01", 1, 2),
                                                                      ("gw-01", 2, 1)]
    assert outbox.depth_sync() == (0, 0)


def test_a_failing_cloud_gets_the_same_bytes_again(cloud: ScriptedCloud, tmp_path: Path) -> None:
    cloud.script[:] = [500, 503]
    outcomes, outbox = _run(cloud, tmp_path, 3)
    assert outcomes == [Outcome.RETRY, Outcome.RETRY, Outcome.DELIVERED]
    assert cloud.received[0] == cloud.received[1] == cloud.received[2]
    assert outbox.depth_sync() == (1, 0)


def test_a_batch_refused_for_good_is_set_aside(cloud: ScriptedCloud, tmp_path: Path) -> None:
    cloud.script[:] = [422]
    outcomes, outbox = _run(cloud, tmp_path, 2)
    assert outcomes == [Outcome.SET_ASIDE, Outcome.DELIVERED]
    assert outbox.depth_sync() == (0, 0)


def test_an_unreachable_cloud_is_a_retry_and_loses_nothing(tmp_path: Path) -> None:
    dead = ScriptedCloud(tmp_path, [])
    dead.close()  # nothing listens on that port any more
    outcomes, outbox = _run(dead, tmp_path, 2)
    assert outcomes == [Outcome.RETRY, Outcome.RETRY]
    assert outbox.depth_sync() == (1, 1)


def test_a_server_with_a_foreign_certificate_is_not_trusted(cloud: ScriptedCloud,
                                                            tmp_path: Path) -> None:
    foreign = SiteCA.create(tmp_path / "foreign", "evil")
    cloud.ca_path = foreign.cert_pem_path
    outcomes, _ = _run(cloud, tmp_path, 1)
    assert outcomes == [Outcome.RETRY]
    assert cloud.received == []


def test_over_the_daily_budget_only_alarms_and_events_go(cloud: ScriptedCloud,
                                                         tmp_path: Path) -> None:
    async def scenario() -> list[Outcome]:
        config = UplinkSection(url=cloud.url, ca=cloud.ca_path, batch_max_records=2,
                               daily_budget_bytes=1)
        uplink = Uplink(config, _endpoint(config), "gw-01", outbox, SoftwareSigner(KEY),
                        GatewayMetrics())
        await outbox.put([_summary(i) for i in range(3)], Priority.SUMMARY)
        outcomes = [await uplink.deliver_one(), await uplink.deliver_one()]
        await outbox.put([Event("n1", "overheat", 5, 3, {"temp": 99.0})], Priority.ALARM)
        outcomes.append(await uplink.deliver_one())
        await uplink.close()
        return outcomes

    outbox = Outbox(GatewayDatabase(tmp_path / "gateway.db"))
    assert asyncio.run(scenario()) == [Outcome.DELIVERED, Outcome.EMPTY, Outcome.DELIVERED]
    last = decode_batch(verify1(cloud.received[-1], lambda kid: KEY.public_key()).payload)
    assert [type(r).__name__ for r in last.records] == ["Event"]
    assert outbox.depth_sync() == (1, 0)  # the third summary waits for tomorrow's budget


def test_batches_travel_gzip_compressed(cloud: ScriptedCloud, tmp_path: Path) -> None:
    _run(cloud, tmp_path, 1)
    assert cloud.encodings == ["gzip"]
    assert cloud.wire_bytes[0] < len(cloud.received[0])


def test_backoff_ceilings_double_to_the_cap_and_delays_are_drawn_from_zero() -> None:
    asked: list[tuple[float, float]] = []
    backoff = Backoff(1.0, 8.0, draw=lambda low, high: asked.append((low, high)) or high)
    delays = [backoff.next_delay() for _ in range(5)]
    assert asked == [(0.0, 1.0), (0.0, 2.0), (0.0, 4.0), (0.0, 8.0), (0.0, 8.0)]
    assert delays == [1.0, 2.0, 4.0, 8.0, 8.0]
    backoff.reset()
    assert backoff.ceiling() == 1.0
    # Full jitter, as promised: the real draw reaches below half the ceiling.
    drawn = [Backoff(1.0, 1.0).next_delay() for _ in range(200)]
    assert min(drawn) < 0.5 and max(drawn) <= 1.0


def _probes(metrics: GatewayMetrics, result: str) -> float:
    value = metrics.registry.get_sample_value("tandem_gw_uplink_probes_total",
                                              {"result": result})
    return value or 0.0


async def _until(check: Callable[[], Awaitable[bool]], timeout: float = 30.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not await check():
        assert asyncio.get_running_loop().time() < deadline, "condition not reached"
        await asyncio.sleep(0.02)


def test_a_cloud_back_from_an_outage_gets_the_backlog_at_the_next_probe(tmp_path: Path) -> None:
    port = free_port()
    ca = SiteCA.create(tmp_path / "pki", "test")
    metrics = GatewayMetrics()
    outbox = Outbox(GatewayDatabase(tmp_path / "gateway.db"))
    received: list[bytes] = []

    async def scenario() -> None:
        config = UplinkSection(url=f"https://127.0.0.1:{port}", ca=ca.cert_pem_path,
                               interval_s=30.0, backoff_max_s=600.0, probe_s=0.05)
        # A frozen clock and the longest draw: the backoff never runs out, so only a
        # probe can end it.
        uplink = Uplink(config, _endpoint(config), "gw-01", outbox, SoftwareSigner(KEY),
                        metrics, backoff=Backoff(30.0, 600.0, draw=lambda low, high: high),
                        clock=lambda: 0.0)
        await outbox.put([_summary(1)], Priority.SUMMARY)
        stop = asyncio.Event()
        task = asyncio.create_task(uplink.run(stop))

        async def probed_down() -> bool:
            return _probes(metrics, "unreachable") >= 3

        async def drained() -> bool:
            return await outbox.depth() == (0, 0)

        try:
            await _until(probed_down)
            cloud = ScriptedCloud(tmp_path, [], port=port)
            try:
                await _until(drained)
                received.extend(cloud.received)
            finally:
                cloud.close()
        finally:
            stop.set()
            await task
            await uplink.close()

    asyncio.run(scenario())
    outbox.database.close()
    assert _probes(metrics, "reachable") == 1
    assert len(received) == 1  # the down cloud was probed, not sent to
    assert metrics.registry.get_sample_value("tandem_gw_uplink_batches_total",
                                             {"result": "retry"}) == 1


def test_a_cloud_that_answers_with_errors_gets_backoff_and_no_probes(
        cloud: ScriptedCloud, tmp_path: Path) -> None:
    cloud.script[:] = [503, 503]
    metrics = GatewayMetrics()
    outbox = Outbox(GatewayDatabase(tmp_path / "gateway.db"))

    async def scenario() -> None:
        config = UplinkSection(url=cloud.url, ca=cloud.ca_path, interval_s=0.2, probe_s=0.01)
        uplink = Uplink(config, _endpoint(config), "gw-01", outbox, SoftwareSigner(KEY),
                        metrics, backoff=Backoff(0.2, 1.0, draw=lambda low, high: high))
        await outbox.put([_summary(1)], Priority.SUMMARY)
        stop = asyncio.Event()
        task = asyncio.create_task(uplink.run(stop))

        async def delivered() -> bool:
            return len(cloud.received) == 3

        try:
            await _until(delivered)
        finally:
            stop.set()
            await task
            await uplink.close()

    asyncio.run(scenario())
    outbox.database.close()
    assert _probes(metrics, "reachable") == _probes(metrics, "unreachable") == 0


def test_an_alarm_leaves_at_once_on_its_own_while_summaries_wait_for_the_interval(
        cloud: ScriptedCloud, tmp_path: Path) -> None:
    """The urgent lane: an alarm put while the uplink idles is sent without waiting for
    the next flush, in a signed batch of its own; a summary waiting beside it stays."""
    outbox = Outbox(GatewayDatabase(tmp_path / "gateway.db"))
    batches: list[list[str]] = []

    async def scenario() -> None:
        # An hour between flushes: only the urgent lane can deliver within the test.
        config = UplinkSection(url=cloud.url, ca=cloud.ca_path, interval_s=3600.0)
        uplink = Uplink(config, _endpoint(config), "gw-01", outbox, SoftwareSigner(KEY),
                        GatewayMetrics())
        outbox.on_urgent.append(uplink.urgent.set)
        stop = asyncio.Event()
        task = asyncio.create_task(uplink.run(stop))

        async def idle() -> bool:
            return (await outbox.depth()) == (0, 0)

        async def alarm_sent() -> bool:
            return len(cloud.received) == 1

        try:
            await _until(idle)  # first pass: nothing waiting, the uplink sleeps an hour
            await outbox.put([_summary(1)], Priority.SUMMARY)
            await outbox.put([Event("n1", "overheat", 5, 3, {"temp": 99.0})], Priority.ALARM)
            await _until(alarm_sent)
        finally:
            stop.set()
            await task
            await uplink.close()
        for body in cloud.received:
            batch = decode_batch(verify1(body, lambda kid: KEY.public_key()).payload)
            batches.append([type(r).__name__ for r in batch.records])

    asyncio.run(scenario())
    assert batches == [["Event"]]
    assert outbox.depth_sync() == (1, 0)  # the summary waits for its flush
    outbox.database.close()


def test_alarms_queued_while_the_cloud_is_down_go_first_when_it_returns(
        tmp_path: Path) -> None:
    """Down link: alarms queue durably; the first batch after the outage holds only them."""
    port = free_port()
    ca = SiteCA.create(tmp_path / "pki", "test")
    metrics = GatewayMetrics()
    outbox = Outbox(GatewayDatabase(tmp_path / "gateway.db"))
    received: list[bytes] = []

    async def scenario() -> None:
        config = UplinkSection(url=f"https://127.0.0.1:{port}", ca=ca.cert_pem_path,
                               interval_s=0.05, backoff_max_s=600.0, probe_s=0.05)
        uplink = Uplink(config, _endpoint(config), "gw-01", outbox, SoftwareSigner(KEY),
                        metrics, backoff=Backoff(30.0, 600.0, draw=lambda low, high: high),
                        clock=lambda: 0.0)
        outbox.on_urgent.append(uplink.urgent.set)
        await outbox.put([_summary(i) for i in range(3)], Priority.SUMMARY)
        stop = asyncio.Event()
        task = asyncio.create_task(uplink.run(stop))

        async def probed_down() -> bool:
            return _probes(metrics, "unreachable") >= 2

        async def drained() -> bool:
            return await outbox.depth() == (0, 0)

        try:
            await _until(probed_down)
            await outbox.put([Event("n1", "overheat", 5, 3, {"temp": 99.0})], Priority.ALARM)
            cloud = ScriptedCloud(tmp_path, [], port=port)
            try:
                await _until(drained)
                received.extend(cloud.received)
            finally:
                cloud.close()
        finally:
            stop.set()
            await task
            await uplink.close()

    asyncio.run(scenario())
    outbox.database.close()
    kinds = [[type(r).__name__ for r in
              decode_batch(verify1(b, lambda kid: KEY.public_key()).payload).records]
             for b in received]
    # The summary batch sealed before the outage is resent byte for byte, but the alarm
    # overtakes it in a batch of its own.
    assert kinds[0] == ["Event"]
    assert sorted(k for ks in kinds[1:] for k in ks) == ["Summary"] * 3
