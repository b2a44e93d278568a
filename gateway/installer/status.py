"""The status snapshot the installer page shows, read from the daemon's own objects.

Nothing here blocks the loop: files (certificate, enrolment) are read in a
thread once a minute; everything else is an in-memory read. The snapshot is
cached for `cache_s`, so a page polled many times a second costs one build.
"""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING, Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from tandem.gateway.identity import enrolled
from tandem.gateway.installer.modbuspage import listing
from tandem.gateway.pipeline.livevalues import LiveValues

if TYPE_CHECKING:
    from tandem.gateway.runtime import Gateway

IDENTITY_REFRESH_S = 60.0
ONLINE_MS = 60_000


class StatusSource:
    """Builds (and caches) the status JSON of one gateway."""

    def __init__(self, gateway: Gateway, live: LiveValues, cache_s: float = 0.5) -> None:
        self._gateway = gateway
        self._live = live
        self._cache_s = cache_s
        self._cached: tuple[float, dict[str, Any]] | None = None
        self._identity: tuple[float, dict[str, Any]] | None = None

    async def snapshot(self) -> dict[str, Any]:
        """The whole status, at most cache_s old."""
        now = time.monotonic()
        if self._cached is not None and now - self._cached[0] < self._cache_s:
            return self._cached[1]
        status = {"gateway": self._gateway.config.gateway.id, "identity": await self._ident(),
                  "cloud": self._cloud(), "nodes": self._nodes(), "modbus": self._modbus(),
                  "alarms": self._alarms(), "model": self._model(),
                  "tasks": self._tasks()}
        self._cached = (now, status)
        return status

    async def _ident(self) -> dict[str, Any]:
        now = time.monotonic()
        if self._identity is None or now - self._identity[0] > IDENTITY_REFRESH_S:
            self._identity = (now, await asyncio.to_thread(self._read_identity))
        return self._identity[1]

    def _read_identity(self) -> dict[str, Any]:
        """Certificate, key store and enrolment (file reads: runs in a thread)."""
        config = self._gateway.config
        info: dict[str, Any] = {"keystore": config.identity.keystore}
        try:
            cert = x509.load_pem_x509_certificate(config.identity.cert.read_bytes())
            info["subject"] = cert.subject.rfc4514_string()
            info["not_after"] = cert.not_valid_after_utc.isoformat()
            raw = serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
            info["keystore_ok"] = cert.public_key().public_bytes(*raw) == \
                self._gateway.keystore.public_key().public_bytes(*raw)
        except (OSError, ValueError) as exc:
            info["keystore_ok"], info["problem"] = False, str(exc)
        try:
            enrolment = enrolled.load(config.gateway.data_dir)
            info["enrolled"] = None if enrolment is None else {
                "cloud": enrolment.cloud, "group": enrolment.group, "serial": enrolment.serial}
        except enrolled.EnrolmentFilesError as exc:
            info["enrolled"], info["problem"] = None, str(exc)
        return info

    def _cloud(self) -> dict[str, Any]:
        gw = self._gateway
        uplink = gw.uplink
        metrics = gw.metrics
        return {"url": gw.config.uplink.url,
                "last_upload_ms": uplink.last_delivered_ms if uplink else 0,
                "last_failure": uplink.last_failure if uplink else "no uplink configured",
                "outbox_records": int(metrics.outbox_records._value.get()),
                "outbox_batches": int(metrics.outbox_batches._value.get()),
                "degraded": bool(metrics.outbox_degraded._value.get())}

    def _nodes(self) -> list[dict[str, Any]]:
        now = self._live.clock()
        return [{"device": t.device, "online": now - t.last_seen_ms < ONLINE_MS,
                 "last_seen_ms": t.last_seen_ms, "reports": t.reports, "gaps": t.gaps,
                 "boot": t.boot, "seq": t.last_seq, "values": dict(t.latest)}
                for t in reversed(self._live.nodes.values())]

    def _modbus(self) -> list[dict[str, Any]]:
        return listing(self._gateway.modbus)

    def _alarms(self) -> list[dict[str, Any]]:
        local = self._gateway.local
        if local is None:
            return []
        engine = local.reflex.engine
        return [{"rule": r.name, "device": device, "severity": r.severity}
                for r in engine.rules for device in list(self._live.nodes)
                if engine.active(r.name, device)]

    def _model(self) -> str:
        local = self._gateway.local
        model = local.model.model if local is not None else None
        return model.version if model is not None else ""

    def _tasks(self) -> dict[str, str]:
        try:
            status = self._gateway.supervisor.status()
        except RuntimeError:
            return {}
        return {name: str(s.as_json()["state"]) for name, s in status.items()}
