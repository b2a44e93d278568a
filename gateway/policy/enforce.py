"""Putting a verified policy release in force: privacy stage, device policy, action limits.

`install` builds everything new first and swaps only when all of it could
be built, so a release this gateway cannot carry out (pseudonymisation
without a sealed key, encryption without the cloud's data key) changes
nothing: the previous policy stays in force.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

from cryptography.hazmat.primitives.asymmetric import ec

from tandem.gateway.access.device_policy import DevicePolicy
from tandem.gateway.identity.keystore import KeyStoreError, SecretStore
from tandem.gateway.policy.limits import ActionLimiter
from tandem.gateway.privacy.gate import PrivacyGate
from tandem.gateway.privacy.keys import pseudonym_key
from tandem.gateway.privacy.stage import PrivacyConfigError, PrivacyStage
from tandem.gateway.privacy.transforms import pseudonym
from tandem.wire.release import Release


class Enforcer:
    """Applies releases to the gateway's enforcement points."""

    def __init__(self, gate: PrivacyGate, devices: DevicePolicy, limiter: ActionLimiter,
                 secrets: SecretStore, recipient: ec.EllipticCurvePublicKey | None,
                 on_device_label: Callable[[Callable[[str], str]], None] | None = None) -> None:
        self._gate = gate
        self._on_device_label = on_device_label  # metrics label devices as the cloud sees them
        self._devices = devices
        self._limiter = limiter
        self._secrets = secrets
        self.recipient = recipient  # the cloud's data key; set later by an in-process enrolment
        self._pseudonym_key: bytes | None = None

    def install(self, release: Release) -> None:
        """Enforce release from now on; PrivacyConfigError (nothing changed) if impossible.

        Runs on the database thread: it may unseal the pseudonym key, and all
        key-store use is kept on that one thread (the uplink signs there).
        """
        doc = release.doc
        key = self._key() if doc.privacy.device_ids == "pseudonymise" else None
        stage = PrivacyStage(doc.privacy, key, self.recipient)
        self._gate.install(stage)
        if self._on_device_label is not None:
            self._on_device_label(str if key is None else functools.partial(pseudonym, key))
        devices = doc.devices
        self._devices.set_policy(devices.allowed, devices.revoked, dict(devices.resources))
        self._limiter.per_minute = doc.limits.max_actions_per_minute

    def _key(self) -> bytes:
        if self._pseudonym_key is None:
            try:
                self._pseudonym_key = pseudonym_key(self._secrets)
            except KeyStoreError as exc:
                raise PrivacyConfigError(f"pseudonym key unavailable: {exc}") from None
        return self._pseudonym_key
