"""A key store whose every call runs on one thread: the daemon's database thread.

The daemon keeps all key-store use on that thread (the uplink signs there,
policy installs unseal there): a TPM context must not be used from two
threads at once. Code running elsewhere (the installer's enrolment wizard,
in a worker thread) gets this wrapper instead of the store itself.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ec

from tandem.gateway.identity.keystore import GatewayKeyStore

RunOnThread = Callable[..., Any]  # run(fn, *args) on the thread, wait, return its result


class KeyStoreOnThread:
    """Forwards to `store` through `run` (e.g. GatewayDatabase.call_sync); never closes it."""

    def __init__(self, store: GatewayKeyStore, run: RunOnThread) -> None:
        self._store = store
        self._run = run
        self.hardware_backed = store.hardware_backed

    def sign_der(self, data: bytes) -> bytes:
        """ECDSA P-256 / SHA-256 signature of data, made on the key store's thread."""
        signature: bytes = self._run(self._store.sign_der, data)
        return signature

    def public_key(self) -> ec.EllipticCurvePublicKey:
        """The public half, read on the key store's thread."""
        key: ec.EllipticCurvePublicKey = self._run(self._store.public_key)
        return key

    def seal(self, name: str, secret: bytes) -> None:
        """Seal secret under name, on the key store's thread."""
        self._run(self._store.seal, name, secret)

    def unseal(self, name: str) -> bytes:
        """The secret sealed under name, opened on the key store's thread."""
        secret: bytes = self._run(self._store.unseal, name)
        return secret

    def close(self) -> None:
        """Nothing: the store belongs to the daemon, which closes it."""
