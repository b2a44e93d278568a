"""On-demand raw snippets: the cloud asks, the gateway answers from its cache or from the node.

    GET  /edge/v1/requests         X-Tandem-Signed: base64url(COSE_Sign1 op "edge-requests")
         200 {"requests": [{"id": n, "kind": "raw", "device": text, "t": unix_ms}, ...]}
    POST /edge/v1/requests/result  COSE_Sign1 op "request-result" {"id", "ok": false, "reason"}

For each request not seen before: a cached snippet of the device within
`match_ms` of `t` is filed at once; otherwise, if the node polled for
commands lately, it is sent `{"raw": true}` and the next snippet it uploads
(within `request_wait_s`) is filed. Filing means the outbox at Priority.BULK,
as a raw record naming the request (wire/raw.py), which the uplink delivers
like any other record. A request that cannot be answered is reported failed.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import dataclasses
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import httpx

from tandem.gateway.config import RawCacheSection
from tandem.gateway.nodes.commands import NodeCommands
from tandem.gateway.nodes.rawcache import RawCache
from tandem.gateway.store.outbox import Outbox, Priority
from tandem.gateway.supervisor import periodic
from tandem.wire.clock import now_ms
from tandem.wire.cose import Signer
from tandem.wire.gwrequest import MEDIA_TYPE, SIGNED_HEADER, sign_request
from tandem.wire.raw import RawSnippet

log = logging.getLogger(__name__)

REQUESTS_PATH = "/edge/v1/requests"
RESULT_PATH = "/edge/v1/requests/result"
Offload = Callable[..., Awaitable[Any]]  # runs a function where the key store may be used


@dataclass(frozen=True, slots=True)
class RawRequest:
    """The cloud wants device's snippet around t_ms (0: any fresh one)."""

    id: int
    device: str
    t_ms: int


class RawRequests:
    """Polls the cloud for raw requests and answers them."""

    def __init__(self, gateway: str, cache: RawCache, commands: NodeCommands, outbox: Outbox,
                 signer: Signer, http: httpx.AsyncClient, offload: Offload,
                 config: RawCacheSection, wake_uplink: Callable[[], None] = lambda: None) -> None:
        self.gateway = gateway
        self.cache = cache
        self.commands = commands
        self.outbox = outbox
        self.answered: dict[int, str] = {}  # request id -> "cache", "node" or the failure
        self._signer = signer
        self._http = http
        self._offload = offload
        self._config = config
        self._wake_uplink = wake_uplink
        self._working: dict[int, asyncio.Task[str]] = {}
        self._unreported: dict[int, str] = {}
        self._waiters: dict[str, list[asyncio.Future[RawSnippet]]] = {}
        cache.arrivals.append(self._arrived)

    async def run(self, stop: asyncio.Event) -> None:
        """Poll every request_poll_s until stop is set; then abandon work in progress."""
        try:
            await periodic(stop, self._config.request_poll_s, self._poll_logged)
        finally:
            for task in list(self._working.values()):
                task.cancel()
            for task in list(self._working.values()):
                with contextlib.suppress(asyncio.CancelledError):
                    await task

    async def _poll_logged(self) -> None:
        try:
            await self.poll_once()
        except (httpx.HTTPError, ValueError) as exc:
            log.info("raw requests: poll failed (%s)", exc)

    async def close(self) -> None:
        """Close the HTTP client."""
        await self._http.aclose()

    async def poll_once(self) -> list[RawRequest]:
        """Fetch the open requests, start answering new ones; return the new ones."""
        await self._report_failures()
        signed = await self._offload(sign_request, "edge-requests", self.gateway, {}, now_ms(),
                                     self._signer)
        response = await self._http.get(REQUESTS_PATH, headers={
            SIGNED_HEADER: base64.urlsafe_b64encode(signed).decode().rstrip("=")})
        if response.status_code != 200:
            log.warning("raw requests: HTTP %d %s", response.status_code, response.text[:200])
            return []
        listed = [r for r in map(_request, response.json().get("requests", [])) if r]
        open_ids = {r.id for r in listed}
        for done in [i for i in self.answered if i not in open_ids]:
            del self.answered[done]  # the cloud has it: forget, so memory stays bounded
        fresh = [r for r in listed if r.id not in self.answered and r.id not in self._working]
        for request in fresh:
            task = asyncio.create_task(self.answer(request), name=f"raw-request-{request.id}")
            self._working[request.id] = task
            task.add_done_callback(self._finished)
        return fresh

    def _finished(self, task: asyncio.Task[str]) -> None:
        self._working = {i: t for i, t in self._working.items() if t is not task}

    async def answer(self, request: RawRequest) -> str:
        """File the snippet request asks for; "cache", "node", or why not."""
        snippet = await self.cache.find(request.device, request.t_ms) if request.t_ms else None
        how = "cache"
        if snippet is None:
            snippet, how = await self._from_node(request.device)
        if snippet is None:
            self._unreported[request.id] = how
            log.warning("raw request %d for %s not answered: %s", request.id, request.device,
                        how)
            await self._report_failures()
        else:
            await self.outbox.put([dataclasses.replace(snippet, request=request.id)],
                                  Priority.BULK)
            self._wake_uplink()
            log.info("raw request %d for %s answered from the %s (%d frames at %d Hz)",
                     request.id, request.device, how, snippet.frames, snippet.rate_hz)
        self.answered[request.id] = how
        return how

    async def _from_node(self, device: str) -> tuple[RawSnippet | None, str]:
        if not self.commands.reachable(device):
            return None, "no cached snippet and the node is not connected"
        waiter: asyncio.Future[RawSnippet] = asyncio.get_running_loop().create_future()
        waiting = self._waiters.setdefault(device, [])
        waiting.append(waiter)
        try:
            if len(waiting) == 1:  # one snippet answers every request waiting for it
                self.commands.send(device, {"raw": True})
            return await asyncio.wait_for(waiter, self._config.request_wait_s), "node"
        except TimeoutError:
            return None, f"the node sent no snippet within {self._config.request_wait_s:g} s"
        finally:
            waiting = self._waiters.get(device, [])
            if waiter in waiting:
                waiting.remove(waiter)
            if not waiting:
                self._waiters.pop(device, None)

    def _arrived(self, snippet: RawSnippet, _received_ms: int) -> None:
        for waiter in self._waiters.pop(snippet.device, []):
            if not waiter.done():
                waiter.set_result(snippet)

    async def _report_failures(self) -> None:
        for request_id, reason in list(self._unreported.items()):
            body = await self._offload(sign_request, "request-result", self.gateway,
                                       {"id": request_id, "ok": False, "reason": reason[:200]},
                                       now_ms(), self._signer)
            try:
                response = await self._http.post(RESULT_PATH, content=body,
                                                 headers={"Content-Type": MEDIA_TYPE})
            except httpx.HTTPError:
                return  # retried at the next poll
            if response.status_code in (200, 404):
                del self._unreported[request_id]


def _request(item: Any) -> RawRequest | None:
    if not isinstance(item, dict) or item.get("kind", "raw") != "raw":
        return None
    rid, device, t_ms = item.get("id"), item.get("device"), item.get("t", 0)
    if type(rid) is not int or not isinstance(device, str) or type(t_ms) is not int:
        return None
    return RawRequest(rid, device, t_ms)
