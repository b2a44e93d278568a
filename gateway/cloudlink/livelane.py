"""The live lane: the newest values of the devices the cloud watches, within a second.

    GET  /edge/v1/live   X-Tandem-Signed: base64url(COSE_Sign1 op "live-watch" {})
    POST /edge/v1/live   COSE_Sign1 op "live-values" {"values": {device: {channel: [t, v]}}}
         both answer 200 {"watch": [{"device", "until"}, ...], "interval_ms": n}

The gateway asks which of its devices are watched every `[live] watch_poll_s`
(each post's answer refreshes the set too). While some are, every `interval_s`
it reads the latest-values board (gateway/pipeline/livevalues.py) for what
changed since its last successful post and sends only that: the newest value
per channel, so a burst of readings coalesces into one entry. There is no
queue: the board is the only buffer, so memory is bounded by the board and
`max_devices` x `max_channels`. A failed post is retried with backoff from the
board as it is then (older values are superseded, never replayed); the
reflex path and the outbox never wait on this lane. Live values are not the
record: summaries in the outbox are.
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
from prometheus_client import CollectorRegistry, Counter, Gauge

from tandem.gateway.cloudlink.backoff import Backoff
from tandem.gateway.cloudlink.client import CloudEndpoint
from tandem.gateway.config import LiveSection
from tandem.gateway.pipeline.livevalues import LiveValues
from tandem.gateway.supervisor import wait_or_stop
from tandem.wire.clock import now_ms
from tandem.wire.cose import Signer
from tandem.wire.errors import WireError
from tandem.wire.gwrequest import MEDIA_TYPE, sign_request
from tandem.wire.live import (
    VALUES_OP,
    WATCH_OP,
    LiveUpdate,
    Watch,
    update_to_plain,
    watches_from_plain,
)

log = logging.getLogger(__name__)
LIVE_PATH = "/edge/v1/live"
SIGNED_HEADER = "X-Tandem-Signed"
Offload = Callable[..., Awaitable[Any]]  # runs a function where the key store may be used


class LiveMetrics:
    """What the lane did: posts by outcome, bytes and values sent, devices watched."""

    def __init__(self, registry: CollectorRegistry | None) -> None:
        self.posts = Counter("tandem_gw_live_posts", "Live-lane requests to the cloud by kind "
                             "(values, watch) and outcome (ok, refused, failed)",
                             ["kind", "outcome"], registry=registry)
        self.bytes = Counter("tandem_gw_live_bytes", "Signed live-lane request bytes sent",
                             registry=registry)
        self.values = Counter("tandem_gw_live_values", "Channel values posted on the live lane",
                              registry=registry)
        self.dropped = Counter("tandem_gw_live_dropped_channels", "Changed channels left out "
                               "of a live post by [live] max_channels", registry=registry)
        self.unsent = Gauge("tandem_gw_live_unsent_devices", "Watched devices left out of the "
                            "live lane by [live] max_devices", registry=registry)
        self.watched = Gauge("tandem_gw_live_watched", "Devices the cloud watches live",
                             registry=registry)
        self.link_up = Gauge("tandem_gw_live_link_up", "1 while the last live-lane call "
                             "succeeded", registry=registry)


class LiveLane:
    """Posts the changed latest values of watched devices, coalesced, at most every interval."""

    def __init__(self, gateway: str, board: LiveValues, config: LiveSection,
                 endpoint: CloudEndpoint, signer: Signer, offload: Offload,
                 registry: CollectorRegistry | None = None,
                 clock_ms: Callable[[], int] = now_ms,
                 http: httpx.AsyncClient | None = None) -> None:
        self.gateway = gateway
        self.board = board
        self.config = config
        self.watched: dict[str, int] = {}  # device -> until_ms, as the cloud last said
        self.metrics = LiveMetrics(registry)
        self._sent: dict[str, int] = {}  # device -> board cursor of its last delivered values
        self._http = http or dataclasses.replace(endpoint,
                                                 timeout_s=config.timeout_s).async_client()
        self._signer = signer
        self._offload = offload
        self._clock_ms = clock_ms
        self._backoff = Backoff(config.interval_s, config.watch_poll_s)
        self._asked = float("-inf")  # monotonic time of the last watched-set answer
        self._up = True
        self._unsent = 0  # watched devices over max_devices, as last warned about

    async def run(self, stop: asyncio.Event) -> None:
        """Step until stop is set; a step returns how long to wait before the next."""
        while not stop.is_set():
            if await wait_or_stop(stop, await self.step()):
                return

    async def step(self) -> float:
        """Refresh the watched set when due, post what changed; seconds until the next step."""
        self._expire()
        try:
            if time.monotonic() - self._asked >= self.config.watch_poll_s:
                await self.ask_watched()
            update = self.pending()
            if update:
                await self.post(update)
        except (httpx.HTTPError, WireError, ValueError) as exc:
            self._failed("failed", f"live lane: cloud not reached ({exc!r})")
            return self._backoff.next_delay()
        if not self._up:
            return self._backoff.next_delay()
        self._backoff.reset()
        return self.config.interval_s if self.watched else self.config.watch_poll_s

    def pending(self) -> LiveUpdate:
        """The watched devices' channels changed since their last delivered post, bounded."""
        update: LiveUpdate = {}
        for device in self.watched:
            changed = self.board.changed_since(device, self._sent.get(device, 0))
            if len(changed) > self.config.max_channels:
                self.metrics.dropped.inc(len(changed) - self.config.max_channels)
                changed = dict(sorted(changed.items())[:self.config.max_channels])
            if changed:
                update[device] = changed
        return update

    async def ask_watched(self) -> None:
        """Fetch the watched set (a signed GET)."""
        signed = await self._sign(WATCH_OP, {})
        response = await self._http.get(LIVE_PATH, headers={
            SIGNED_HEADER: base64.urlsafe_b64encode(signed).decode().rstrip("=")})
        self._answered("watch", response)

    async def post(self, update: LiveUpdate) -> bool:
        """Send update; on the cloud's 200 mark it delivered. True when delivered."""
        cursor = self.board.cursor
        signed = await self._sign(VALUES_OP, update_to_plain(update))
        self.metrics.bytes.inc(len(signed))
        response = await self._http.post(LIVE_PATH, content=signed,
                                         headers={"Content-Type": MEDIA_TYPE})
        if not self._answered("values", response):
            return False
        for device in update:
            self._sent[device] = cursor
        self.metrics.values.inc(sum(len(channels) for channels in update.values()))
        return True

    async def close(self) -> None:
        """Close the HTTP client (after the task ended)."""
        await self._http.aclose()

    async def _sign(self, op: str, body: dict[str, Any]) -> bytes:
        signed: bytes = await self._offload(sign_request, op, self.gateway, body,
                                            self._clock_ms(), self._signer)
        return signed

    def _answered(self, kind: str, response: httpx.Response) -> bool:
        """Take the watched set from a 200; count and warn about anything else."""
        if response.status_code != 200:
            self.metrics.posts.labels(kind, "refused").inc()
            self._failed("refused", f"live lane: {kind} refused: HTTP {response.status_code} "
                         f"{response.text[:200]}")
            return False
        self._watch(watches_from_plain(response.json()))
        self.metrics.posts.labels(kind, "ok").inc()
        if not self._up:
            log.info("live lane: the cloud answers again")
        self._up = True
        self.metrics.link_up.set(1)
        return True

    def _watch(self, watches: list[Watch]) -> None:
        now = self._clock_ms()
        live = [w for w in watches if w.until_ms > now]
        unsent = max(0, len(live) - self.config.max_devices)
        if unsent and unsent != self._unsent:  # warn once per change, not per answer
            log.warning("live lane: the cloud watches %d devices here, %d are sent", len(live),
                        self.config.max_devices)
        self._unsent = unsent
        self.metrics.unsent.set(unsent)
        live = live[:self.config.max_devices]
        self.watched = {w.device: w.until_ms for w in live}
        self._forget_unwatched()
        self._asked = time.monotonic()

    def _expire(self) -> None:
        """Drop watches past their time even if the cloud cannot be asked."""
        now = self._clock_ms()
        self.watched = {d: until for d, until in self.watched.items() if until > now}
        self._forget_unwatched()

    def _forget_unwatched(self) -> None:
        # a device watched again later starts from all its latest values
        self._sent = {d: c for d, c in self._sent.items() if d in self.watched}
        self.metrics.watched.set(len(self.watched))

    def _failed(self, outcome: str, message: str) -> None:
        if outcome == "failed":
            self.metrics.posts.labels("any", "failed").inc()
        if self._up:  # one WARNING per outage, not one per interval
            log.warning("%s", message)
        self._up = False
        self.metrics.link_up.set(0)
