"""Fetches the group's signed policy, refuses what must be refused, installs and acknowledges.

A release is refused, logged and reported to the cloud (ack ok = false) when
its signature is not by the trusted policy key (forged or unsigned), it is
for another group, its version is not above the one in force, or this
gateway cannot carry it out. The policy in force then simply stays. The
accepted release is kept in <data_dir>/policy/current.cose and re-verified
at start-up, so a restart enforces it before the first record is filed.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import logging
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
from cryptography.hazmat.primitives.asymmetric import ec

from tandem.gateway.identity.keystore import KeyStore
from tandem.gateway.identity.secretfiles import write_private
from tandem.gateway.privacy.stage import PrivacyConfigError
from tandem.gateway.supervisor import periodic
from tandem.wire.clock import now_ms
from tandem.wire.errors import WireError
from tandem.wire.gwrequest import MEDIA_TYPE, SIGNED_HEADER, sign_request
from tandem.wire.release import Release, open_release

log = logging.getLogger(__name__)

CURRENT_PATH = "/policy/v1/current"
ACK_PATH = "/policy/v1/ack"
POLICY_FILE = "current.cose"

# Runs a function on the database thread (where the key store is used).
Offload = Callable[..., Awaitable[Any]]


class Refused(Exception):
    """A release that will not be installed."""

    def __init__(self, reason: str, version: int = 0) -> None:
        super().__init__(reason)
        self.reason = reason
        self.version = version


class PolicyAgent:
    """One gateway's policy client."""

    def __init__(self, gateway: str, group: str, trusted: ec.EllipticCurvePublicKey,
                 directory: Path, install: Callable[[Release], None], signer: KeyStore,
                 http: httpx.AsyncClient, offload: Offload, poll_s: float) -> None:
        self.gateway = gateway
        self.group = group
        self.current: Release | None = None
        self.refusals = 0
        self._trusted = trusted
        self._file = directory / POLICY_FILE
        self._install = install
        self._signer = signer
        self._http = http
        self._offload = offload
        self._poll_s = poll_s
        self._last_digest = ""
        self._unsent_ack: dict[str, Any] | None = None

    def restore(self) -> None:
        """Re-verify and enforce the saved release (start-up, before any record is filed)."""
        try:
            envelope = self._file.read_bytes()
        except FileNotFoundError:
            return
        try:
            release = self._verify(envelope)
            self._install(release)
        except (Refused, PrivacyConfigError) as exc:
            log.critical("saved policy %s not enforced: %s", self._file, exc)
            return
        self.current, self._last_digest = release, _digest(envelope)
        log.info("policy %s v%d in force (saved)", release.group, release.version)

    async def close(self) -> None:
        """Close the HTTP client."""
        await self._http.aclose()

    async def run(self, stop: asyncio.Event) -> None:
        """Check every poll_s until stop is set."""
        async def step() -> None:
            with contextlib.suppress(httpx.HTTPError):
                await self.check_once()

        await periodic(stop, self._poll_s, step)

    async def check_once(self) -> str:
        """Fetch, judge, install, acknowledge; return what happened."""
        await self._send_unsent_ack()
        request = await self._offload(sign_request, "policy-get", self.gateway, {}, now_ms(),
                                      self._signer)
        response = await self._http.get(CURRENT_PATH, headers={
            SIGNED_HEADER: base64.urlsafe_b64encode(request).decode().rstrip("=")})
        if response.status_code == 204:
            return "none"
        if response.status_code != 200:
            log.warning("policy fetch: HTTP %d %s", response.status_code, response.text[:200])
            return "error"
        return await self.consider(response.content)

    async def consider(self, envelope: bytes) -> str:
        """Install envelope's release if it may be; "unchanged", "applied" or "refused"."""
        digest = _digest(envelope)
        if digest == self._last_digest:
            return "unchanged"
        self._last_digest = digest
        try:
            release = self._verify(envelope)
            await self._offload(self._install, release)
        except (Refused, PrivacyConfigError) as exc:
            version = exc.version if isinstance(exc, Refused) else 0
            self.refusals += 1
            log.error("policy REFUSED (%s); the policy in force stays", exc)
            await self._ack(version, False, str(exc))
            return "refused"
        write_private(self._file, envelope)
        self.current = release
        log.info("policy %s v%d in force", release.group, release.version)
        await self._ack(release.version, True, "applied")
        return "applied"

    def _verify(self, envelope: bytes) -> Release:
        try:
            release = open_release(envelope, self._trusted)
        except WireError as exc:
            raise Refused(f"not signed by the trusted policy key ({exc})") from None
        if release.group != self.group:
            raise Refused(f"release is for group {release.group!r}, this gateway is in "
                          f"{self.group!r}", release.version)
        if self.current is not None and release.version <= self.current.version:
            raise Refused(f"version {release.version} is not newer than "
                          f"{self.current.version} in force", release.version)
        return release

    async def _ack(self, version: int, ok: bool, reason: str) -> None:
        self._unsent_ack = {"group": self.group, "ver": version, "ok": ok,
                            "reason": reason[:300]}
        with contextlib.suppress(httpx.HTTPError):
            await self._send_unsent_ack()

    async def _send_unsent_ack(self) -> None:
        if self._unsent_ack is None:
            return
        body = await self._offload(sign_request, "policy-ack", self.gateway, self._unsent_ack,
                                   now_ms(), self._signer)
        response = await self._http.post(ACK_PATH, content=body,
                                         headers={"Content-Type": MEDIA_TYPE})
        if response.status_code == 200:
            self._unsent_ack = None
        else:
            log.warning("policy ack: HTTP %d %s", response.status_code, response.text[:200])


def _digest(envelope: bytes) -> str:
    return hashlib.sha256(envelope).hexdigest()
