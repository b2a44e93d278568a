"""Where the gateway's identity key lives, behind the `Signer` protocol of wire.cose.

`SoftwareKeyStore` reads a PEM key file (the zero-setup default). A TPM-backed
store (the key created inside the TPM, never exported) implements the same
interface; the rest of the gateway cannot tell them apart.
"""

from __future__ import annotations

import logging
import stat
from pathlib import Path
from typing import Protocol

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

log = logging.getLogger(__name__)


class KeyStoreError(Exception):
    """The identity key cannot be used."""


class KeyStore(Protocol):
    """The gateway identity: signs batches, names its public key."""

    hardware_backed: bool

    def sign_der(self, data: bytes) -> bytes:
        """ECDSA P-256 / SHA-256 signature of data, DER-encoded."""
        ...

    def public_key(self) -> ec.EllipticCurvePublicKey:
        """The public half, for checks and registration."""
        ...


class SoftwareKeyStore:
    """The identity key in a PEM file on disk: no hardware protection."""

    hardware_backed = False

    def __init__(self, key_path: Path) -> None:
        try:
            key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
        except FileNotFoundError:
            raise KeyStoreError(f"identity key {key_path} not found") from None
        except ValueError as exc:
            raise KeyStoreError(f"identity key {key_path} is not a PEM private key: {exc}") from None
        if not isinstance(key, ec.EllipticCurvePrivateKey) or key.curve.name != "secp256r1":
            raise KeyStoreError(f"identity key {key_path} must be an EC P-256 key")
        if key_path.stat().st_mode & (stat.S_IRWXG | stat.S_IRWXO):
            log.warning("identity key %s is readable by group/others; chmod 600 it", key_path)
        log.warning("identity key held in software (%s): no TPM protection", key_path)
        self._key = key

    def sign_der(self, data: bytes) -> bytes:
        """Sign with the file key."""
        return self._key.sign(data, ec.ECDSA(hashes.SHA256()))

    def public_key(self) -> ec.EllipticCurvePublicKey:
        """The public half of the file key."""
        return self._key.public_key()
