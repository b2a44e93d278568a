"""Sends the installer page's changes to the cloud audit log (POST /fleet/v1/installer-audit).

Signed with the gateway's identity key like its other requests (wire/gwrequest.py).
Events leave the trail's bounded queue only after the cloud's 200, so a change
made while the cloud is away is sent once it is back (or, if the queue
overflows first, counted as dropped and logged by the trail).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import asdict
from typing import Any

import httpx

from tandem.gateway.identity.keystore import KeyStore
from tandem.gateway.installer.audit import AuditTrail
from tandem.gateway.supervisor import periodic
from tandem.wire.clock import now_ms
from tandem.wire.gwrequest import MEDIA_TYPE, sign_request

log = logging.getLogger(__name__)

AUDIT_PATH = "/fleet/v1/installer-audit"
OP = "installer-audit"
MAX_BATCH = 100
Offload = Callable[..., Awaitable[Any]]


class AuditLink:
    """Moves the trail's pending events to the cloud, oldest first."""

    def __init__(self, gateway: str, trail: AuditTrail, signer: KeyStore,
                 http: httpx.AsyncClient, offload: Offload, interval_s: float = 2.0) -> None:
        self.gateway = gateway
        self.trail = trail
        self.interval_s = interval_s
        self.sent = 0
        self._signer = signer
        self._http = http
        self._offload = offload

    async def run(self, stop: asyncio.Event) -> None:
        """Send what is pending every interval_s until stop."""
        async def step() -> None:
            with contextlib.suppress(httpx.HTTPError):
                await self.send_once()

        await periodic(stop, self.interval_s, step)

    async def send_once(self) -> int:
        """Send up to MAX_BATCH pending events; returns how many the cloud recorded."""
        batch = list(self.trail.pending)[:MAX_BATCH]
        if not batch:
            return 0
        body = await self._offload(sign_request, OP, self.gateway,
                                   {"events": [asdict(e) for e in batch]}, now_ms(),
                                   self._signer)
        response = await self._http.post(AUDIT_PATH, content=body,
                                         headers={"Content-Type": MEDIA_TYPE})
        if response.status_code != 200:
            log.warning("installer audit: HTTP %d %s", response.status_code, response.text[:200])
            return 0
        for event in batch:  # the queue may have dropped some meanwhile: remove what was sent
            with contextlib.suppress(ValueError):
                self.trail.pending.remove(event)
        self.sent += len(batch)
        return len(batch)

    async def close(self) -> None:
        """Close the HTTP client."""
        await self._http.aclose()
