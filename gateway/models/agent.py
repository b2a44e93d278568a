"""Fetches the signed model release, downloads it resumably, checks it, swaps it in atomically.

A release is refused (logged, counted, the active model keeps running) when
its manifest is not signed by the trusted release key, it is older than the
model in force and not an operator's rollback, no artefact fits what this
gateway holds, the transfer fails or the reconstructed bytes do not match
the card, or the model does not load or does not take the card's inputs.
Nothing is swapped before the new model has loaded and scored once (on a
worker thread, through ModelSlot.install), so the reflex path never waits.
The previous model file stays as last-known-good; `state.json` says which
version is active, so a restart loads it again.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import json
import logging
import lzma
import threading
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from cryptography.hazmat.primitives.asymmetric import ec
from prometheus_client import Counter

from tandem.gateway.identity.keystore import KeyStore
from tandem.gateway.inference.model import ModelError, ScoringModel
from tandem.gateway.inference.slot import ModelSlot
from tandem.gateway.models.feedback import Feedback
from tandem.gateway.models.transfer import Download, TokenBucket, TransferError, TransferMetrics
from tandem.gateway.supervisor import periodic
from tandem.wire.clock import now_ms
from tandem.wire.errors import WireError
from tandem.wire.gwrequest import MEDIA_TYPE, SIGNED_HEADER, sign_request
from tandem.wire.modelcard import ModelCard
from tandem.wire.modeldelta import apply_delta
from tandem.wire.modelrelease import ModelRelease, open_manifest

log = logging.getLogger(__name__)

CURRENT_PATH = "/models/v1/current"
REPORT_PATH = "/models/v1/report"
SHADOW_HEADER = "X-Model-Shadow"
STATE_FILE = "state.json"

Offload = Callable[..., Awaitable[Any]]


class Refused(Exception):
    """A release that will not be activated; `reason` is the metric label."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason


@dataclass
class ActiveModel:
    """What runs: version, registry order, and the last-known-good version before it."""

    version: str
    seq: int
    last_good: str | None = None
    threshold: float | None = None


class ModelAgent:
    """One gateway's model client."""

    def __init__(self, gateway: str, trusted: ec.EllipticCurvePublicKey, directory: Path,
                 slot: ModelSlot, signer: KeyStore, http: httpx.AsyncClient, offload: Offload,
                 metrics: TransferMetrics, bucket: TokenBucket | None = None,
                 poll_s: float = 30.0) -> None:
        self.gateway = gateway
        self.slot = slot
        self.active: ActiveModel | None = None
        self.shadow: str | None = None  # the version scored beside the active one
        self.refused = Counter("tandem_gw_model_refused", "Model releases refused, by reason",
                               ["reason"], registry=metrics.registry)
        self.last_download: Download | None = None
        self._trusted = trusted
        self._dir = directory
        self._signer = signer
        self._http = http
        self._offload = offload
        self._metrics = metrics
        self._bucket = bucket
        self._poll_s = poll_s
        self._seen = ""
        self._thresholds: dict[str, float] = {}
        self._last_good_model: ScoringModel | None = None
        self._faulted: set[str] = set()
        self._events: list[dict[str, Any]] = []
        self.feedback = Feedback(self._thresholds.get, self._fault)
        slot.observer = self.feedback

    async def restore(self) -> None:
        """Load the model state.json names as active (start-up)."""
        try:
            state = json.loads((self._dir / STATE_FILE).read_text())
            active = ActiveModel(state["version"], int(state["seq"]), state.get("last_good"),
                                 state.get("threshold"))
        except (OSError, ValueError, KeyError):
            return
        try:
            model = await asyncio.to_thread(ScoringModel.load, self._model_path(active.version))
        except ModelError as exc:
            self.refused.labels("load").inc()
            log.critical("saved model %s not loaded: %s", active.version, exc)
            return
        self._name(model, active.version, active.threshold)
        self.slot.install(model)
        self.active = active
        log.info("model %s active (saved)", active.version)

    async def close(self) -> None:
        """Close the HTTP client."""
        await self._http.aclose()

    async def run(self, stop: asyncio.Event) -> None:
        """Check every poll_s until stop is set."""
        async def step() -> None:
            with contextlib.suppress(httpx.HTTPError):
                await self.check_once()
            with contextlib.suppress(httpx.HTTPError):
                await self.send_reports()

        await periodic(stop, self._poll_s, step)

    async def check_once(self) -> str:
        """Fetch the manifest and act on it: "none", "unchanged", "applied" or "refused"."""
        response = await self._http.get(CURRENT_PATH, headers=await self.signed_headers())
        if response.status_code not in (200, 204):
            log.warning("model release fetch: HTTP %d %s", response.status_code,
                        response.text[:200])
            return "error"
        shadow = response.headers.get(SHADOW_HEADER)
        result = "none" if response.status_code == 204 else \
            await self.consider(response.content)
        await self.consider_shadow(None if shadow is None else
                                   base64.urlsafe_b64decode(shadow + "=" * (-len(shadow) % 4)))
        return result

    async def consider_shadow(self, envelope: bytes | None) -> None:
        """Score the release in envelope beside the active model (None: stop shadowing)."""
        if envelope is None:
            self.slot.shadow, self.shadow = None, None
            return
        try:
            release = open_manifest(envelope, self._trusted)
        except WireError as exc:
            self.refused.labels("signature").inc()
            log.error("shadow model release REFUSED: not signed by the trusted key (%s)", exc)
            return
        version = release.card.version
        if version in (self.shadow, self.active.version if self.active else None):
            return
        try:
            model = await self._prepare(release)
        except Refused as exc:
            self.refused.labels(exc.reason).inc()
            log.error("shadow model %s REFUSED (%s)", version, exc)
            return
        self.slot.shadow, self.shadow = model, version
        log.info("model %s scoring in shadow beside %s", version,
                 self.active.version if self.active else "no model")

    async def signed_headers(self) -> dict[str, str]:
        """A fresh signed "model-get" request, for the manifest and every artefact chunk."""
        request = await self._offload(sign_request, "model-get", self.gateway, {}, now_ms(),
                                      self._signer)
        return {SIGNED_HEADER: base64.urlsafe_b64encode(request).decode().rstrip("=")}

    async def consider(self, envelope: bytes) -> str:
        """Activate the release in envelope if it may be; the active model stays otherwise."""
        digest = hashlib.sha256(envelope).hexdigest()
        if digest == self._seen:
            return "unchanged"
        try:
            release = self._judge(envelope)
            if release is None:
                self._seen = digest
                return "unchanged"
            await self._activate(release)
        except Refused as exc:
            self.refused.labels(exc.reason).inc()
            log.error("model release REFUSED (%s); %s keeps running", exc,
                      self.active.version if self.active else "no model")
            if exc.reason != "transfer":  # a transfer is retried next poll
                self._seen = digest
            return "refused"
        self._seen = digest
        return "applied"

    def _judge(self, envelope: bytes) -> ModelRelease | None:
        try:
            release = open_manifest(envelope, self._trusted)
        except WireError as exc:
            raise Refused("signature", f"not signed by the trusted release key ({exc})") \
                from None
        active = self.active
        if active is not None and release.card.version == active.version:
            return None
        if release.card.version in self._faulted and not release.rollback:
            raise Refused("faulted", f"{release.card.version} failed at invoke here and was "
                                     "rolled back")
        if active is not None and release.seq < active.seq and not release.rollback:
            raise Refused("downgrade", f"{release.card.version} (#{release.seq}) is older "
                                       f"than {active.version} (#{active.seq}) and not a "
                                       "rollback")
        return release

    async def _activate(self, release: ModelRelease) -> None:
        card = release.card
        model = await self._prepare(release)
        previous_model = self.slot.model
        try:
            self.slot.install(model)
        except ModelError as exc:
            self._model_path(card.version).unlink(missing_ok=True)
            raise Refused("input_shape", str(exc)) from None
        if self.shadow == card.version:
            self.slot.shadow, self.shadow = None, None
        self._last_good_model = previous_model
        self._faulted.discard(card.version)
        previous = self.active.version if self.active else None
        self.active = ActiveModel(card.version, release.seq, previous, card.threshold)
        await asyncio.to_thread(self._save_state)
        log.info("model %s active (#%d%s; last-known-good %s)", card.version, release.seq,
                 ", operator rollback" if release.rollback else "", previous)

    async def _prepare(self, release: ModelRelease) -> ScoringModel:
        """Download, reconstruct, check and load release's model (nothing is swapped here)."""
        card = release.card
        held = {p.stem for p in (self._dir / "versions").glob("*.tflite")}
        artefact = release.best_for(held)
        if artefact is None:
            raise Refused("no_artefact", f"no artefact of {card.version} fits the versions "
                                         f"held here ({sorted(held)})")
        download = Download(self._http, artefact, self._dir / "artefacts", self.signed_headers,
                            self._metrics, self._bucket)
        self.last_download = download
        try:
            packed = await download.run()
        except (TransferError, httpx.HTTPError) as exc:
            raise Refused("transfer", str(exc)) from None
        path = await asyncio.to_thread(self._unpack, packed, card, artefact.parent)
        try:
            model = await asyncio.to_thread(ScoringModel.load, path)
        except ModelError as exc:
            path.unlink(missing_ok=True)
            raise Refused("load", str(exc)) from None
        if model.size != len(card.input.features):
            path.unlink(missing_ok=True)
            raise Refused("input_shape", f"{card.version} takes {model.size} inputs, its card "
                                         f"lists {len(card.input.features)} features")
        self._name(model, card.version, card.threshold)
        return model

    def _name(self, model: ScoringModel, version: str, threshold: float | None) -> None:
        self.feedback.name(model, version)
        if threshold is not None:
            self._thresholds[version] = threshold

    def _fault(self, version: str, error: Exception) -> None:
        """A model that errors at invoke: back to the last-known-good at once (a reference swap)."""
        active = self.active
        if active is None or version != active.version or version in self._faulted:
            return
        self._faulted.add(version)
        self.refused.labels("invoke").inc()
        self.slot.install(self._last_good_model)
        log.error("model %s failed at invoke (%s): rolled back to %s", version, error,
                  active.last_good or "no model")
        self._events.append({"version": version, "event": "rolled_back",
                             "reason": str(error)[:200], "to": active.last_good})
        self.active = None if active.last_good is None else ActiveModel(
            active.last_good, active.seq, None, self._thresholds.get(active.last_good))
        # The state file is rewritten by a thread of its own: the reflex path does not wait.
        threading.Thread(target=self._save_state, name="model-state", daemon=True).start()

    async def send_reports(self) -> int:
        """Sign and send the figures per version since the last report; how many were sent."""
        taken = self.feedback.take()
        active = self.active.version if self.active else ""
        reports = [stats.to_plain(version, "active" if version == active else
                                  "shadow" if version == self.shadow else "previous")
                   for version, stats in taken.items()]
        if not reports and not self._events:
            return 0
        body = {"reports": reports, "events": list(self._events)}
        try:
            envelope = await self._offload(sign_request, "model-report", self.gateway, body,
                                           now_ms(), self._signer)
            response = await self._http.post(REPORT_PATH, content=envelope,
                                              headers={"Content-Type": MEDIA_TYPE})
        except httpx.HTTPError:
            self.feedback.put_back(taken)  # sent with the next report
            raise
        if response.status_code != 200:
            self.feedback.put_back(taken)
            log.warning("model report: HTTP %d %s", response.status_code, response.text[:200])
            return 0
        self._events.clear()
        return len(reports)

    def _unpack(self, packed: Path, card: ModelCard, parent: str | None) -> Path:
        """The model from the full artefact, or from the held parent and a delta."""
        try:
            model = lzma.decompress(packed.read_bytes()) if parent is None else \
                apply_delta(self._model_path(parent).read_bytes(), packed.read_bytes())
        except (lzma.LZMAError, WireError, OSError) as exc:
            raise Refused("corrupt", f"{card.version}: artefact does not unpack: {exc}") \
                from None
        if hashlib.sha256(model).hexdigest() != card.sha256 or len(model) != card.size:
            raise Refused("corrupt", f"{card.version}: reconstructed model does not match "
                                     "the card's sha256/size")
        path = self._model_path(card.version)
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_suffix(".part")
        partial.write_bytes(model)
        partial.replace(path)
        return path

    def _model_path(self, version: str) -> Path:
        return self._dir / "versions" / f"{version}.tflite"

    def _save_state(self) -> None:
        if self.active is None:
            (self._dir / STATE_FILE).unlink(missing_ok=True)
            return
        partial = self._dir / (STATE_FILE + ".part")
        partial.write_text(json.dumps({"version": self.active.version, "seq": self.active.seq,
                                       "last_good": self.active.last_good,
                                       "threshold": self.active.threshold}))
        partial.replace(self._dir / STATE_FILE)
