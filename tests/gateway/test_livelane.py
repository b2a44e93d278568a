"""The live lane's logic: what it sends, how it coalesces, and its bounds.

The cloud is an httpx.MockTransport that checks each request's signature and
keeps its body (this is about the lane's choices); tests/e2e/test_live_lane.py
runs it between real processes.
"""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from prometheus_client import CollectorRegistry

from tandem.gateway.cloudlink.client import CloudEndpoint
from tandem.gateway.cloudlink.livelane import LiveLane
from tandem.gateway.config import LiveSection
from tandem.gateway.pipeline.livevalues import LiveValues
from tandem.gateway.reports import DeviceReport
from tandem.wire.cose import SoftwareSigner
from tandem.wire.gwrequest import open_request
from tandem.wire.live import update_from_plain
from tandem.wire.report import Report

KEY = ec.generate_private_key(ec.SECP256R1())
NOW = 1_800_000_000_000


class Cloud:
    """Answers like the cloud: the watched set; records each verified live post."""

    def __init__(self, watched: list[str]) -> None:
        self.watched = watched
        self.posts: list[dict[str, dict[str, tuple[float, int]]]] = []
        self.asks = 0
        self.status = 200

    def __call__(self, request: httpx.Request) -> httpx.Response:
        if self.status != 200:
            return httpx.Response(self.status, json={"error": "down"})
        if request.method == "GET":
            signed = base64.urlsafe_b64decode(request.headers["X-Tandem-Signed"] + "==")
            open_request(signed, lambda kid: KEY.public_key(), "live-watch", NOW, 10_000)
            self.asks += 1
        else:
            body = open_request(request.content, lambda kid: KEY.public_key(), "live-values",
                                NOW, 10_000).body
            update = update_from_plain(body, 100, 100)
            self.posts.append({d: {c: (v.value, v.t_ms) for c, v in chans.items()}
                               for d, chans in update.items()})
        return httpx.Response(200, json={
            "watch": [{"device": d, "until": NOW + 60_000} for d in self.watched],
            "interval_ms": 250})


def report(board: LiveValues, device: str, seq: int, values: dict[str, float]) -> None:
    board.take(DeviceReport(device, Report(seq, 1, NOW - 1000 + seq, values), NOW))


def run(cloud: Cloud, scenario: Callable[[LiveLane, LiveValues], Awaitable[Any]],
        **config: Any) -> Any:
    async def main() -> Any:
        async def offload(fn: Callable[..., Any], *args: Any) -> Any:
            return fn(*args)

        board = LiveValues()
        http = httpx.AsyncClient(base_url="http://cloud", transport=httpx.MockTransport(cloud))
        lane = LiveLane("gw-01", board, LiveSection(**config),
                        CloudEndpoint("http://cloud", None, 1.0),  # type: ignore[arg-type]
                        SoftwareSigner(KEY), offload, CollectorRegistry(), lambda: NOW, http)
        try:
            return await scenario(lane, board)
        finally:
            await lane.close()

    return asyncio.run(main())


def test_nothing_is_sent_while_no_device_is_watched() -> None:
    cloud = Cloud([])

    async def scenario(lane: LiveLane, board: LiveValues) -> float:
        report(board, "n1", 1, {"temp": 20.0})
        return await lane.step()

    assert run(cloud, scenario) == 2.0  # idle: ask again after watch_poll_s
    assert (cloud.asks, cloud.posts) == (1, [])


def test_a_burst_of_readings_travels_as_the_newest_value_per_channel_of_watched_devices() -> None:
    cloud = Cloud(["n1"])

    async def scenario(lane: LiveLane, board: LiveValues) -> float:
        for seq in range(1, 11):
            report(board, "n1", seq, {"temp": 20.0 + seq, "rpm": 900.0})
        report(board, "n2", 1, {"temp": 5.0})  # not watched
        return await lane.step()

    assert run(cloud, scenario) == 0.25
    assert cloud.posts == [{"n1": {"temp": (30.0, NOW - 990), "rpm": (900.0, NOW - 990)}}]


def test_only_channels_changed_since_the_last_delivered_post_are_sent_again() -> None:
    cloud = Cloud(["n1"])

    async def scenario(lane: LiveLane, board: LiveValues) -> None:
        report(board, "n1", 1, {"temp": 20.0, "rpm": 900.0})
        await lane.step()
        await lane.step()  # nothing changed: no post
        report(board, "n1", 2, {"temp": 21.0})
        await lane.step()

    run(cloud, scenario)
    assert cloud.posts == [{"n1": {"temp": (20.0, NOW - 999), "rpm": (900.0, NOW - 999)}},
                           {"n1": {"temp": (21.0, NOW - 998)}}]
    assert cloud.asks == 1  # each post's answer refreshed the watched set


def test_a_failed_post_is_retried_later_with_the_newest_values_only() -> None:
    cloud = Cloud(["n1"])

    async def scenario(lane: LiveLane, board: LiveValues) -> tuple[float, float]:
        await lane.step()  # learns the watched set
        cloud.status = 503
        report(board, "n1", 1, {"temp": 20.0})
        backoff = await lane.step()
        report(board, "n1", 2, {"temp": 22.0})
        cloud.status = 200
        return backoff, await lane.step()

    backoff, after = run(cloud, scenario)
    assert 0 <= backoff <= 0.25 and after == 0.25
    assert cloud.posts == [{"n1": {"temp": (22.0, NOW - 998)}}]


def test_an_unreachable_cloud_backs_off_and_the_watch_ends_at_its_time() -> None:
    def down(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    async def scenario(lane: LiveLane, board: LiveValues) -> list[float]:
        lane.watched = {"n1": NOW + 1, "n2": NOW - 1}
        report(board, "n1", 1, {"temp": 20.0})
        delays = [await lane.step() for _ in range(6)]
        assert list(lane.watched) == ["n1"]  # n2's watch ran out without the cloud
        return delays

    delays = run(down, scenario)  # type: ignore[arg-type]
    assert all(0 <= d <= 2.0 for d in delays)


def test_devices_and_channels_are_bounded_and_the_excess_counted() -> None:
    cloud = Cloud([f"n{i}" for i in range(5)])

    async def scenario(lane: LiveLane, board: LiveValues) -> LiveLane:
        for i in range(5):
            report(board, f"n{i}", 1, {f"c{k}": float(k) for k in range(4)})
        await lane.step()
        return lane

    lane = run(cloud, scenario, max_devices=3, max_channels=2)
    assert len(cloud.posts) == 1 and list(cloud.posts[0]) == ["n0", "n1", "n2"]
    assert all(list(chans) == ["c0", "c1"] for chans in cloud.posts[0].values())
    assert lane.metrics.unsent._value.get() == 2
    assert lane.metrics.dropped._value.get() == 6


@pytest.mark.parametrize("status", [401, 403])
def test_a_refused_post_is_counted_and_not_marked_delivered(status: int) -> None:
    cloud = Cloud(["n1"])

    async def scenario(lane: LiveLane, board: LiveValues) -> LiveLane:
        await lane.step()
        report(board, "n1", 1, {"temp": 20.0})
        cloud.status = status
        await lane.step()
        cloud.status = 200
        await lane.step()
        return lane

    lane = run(cloud, scenario)
    assert lane.metrics.posts.labels("values", "refused")._value.get() == 1
    assert cloud.posts == [{"n1": {"temp": (20.0, NOW - 999)}}]
