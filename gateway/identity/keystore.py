"""Where the gateway's identity key lives, behind the `Signer` protocol of wire.cose.

`SoftwareKeyStore` reads a PEM key file (the zero-setup default), plain or
encrypted with a passphrase (PKCS#8). `TpmKeyStore` (gateway.keystore_tpm)
keeps the key inside a TPM 2.0, never exported; the rest of the gateway cannot
tell them apart. Both also seal small secrets (data-encryption and
pseudonymisation keys) so that none is ever on disk in plaintext.
"""

from __future__ import annotations

import logging
import os
import stat
from collections.abc import Mapping
from pathlib import Path
from typing import Protocol

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from tandem.gateway.identity import passbox
from tandem.gateway.identity.secretfiles import SecretNameError, secret_path, write_private

log = logging.getLogger(__name__)

SEALED_SUFFIX = ".sealed"


class KeyStoreError(Exception):
    """The identity key or a sealed secret cannot be used."""


class SecretMissing(KeyStoreError):
    """No secret has been sealed under that name (as opposed to one that will not open)."""


class KeyStore(Protocol):
    """The gateway identity: signs batches, names its public key."""

    hardware_backed: bool

    def sign_der(self, data: bytes) -> bytes:
        """ECDSA P-256 / SHA-256 signature of data, DER-encoded."""
        ...

    def public_key(self) -> ec.EllipticCurvePublicKey:
        """The public half, for checks and registration."""
        ...


class SecretStore(Protocol):
    """Small secrets sealed by the key store, one per name."""

    def seal(self, name: str, secret: bytes) -> None:
        """Store secret under name, encrypted or TPM-sealed; replaces an older one."""
        ...

    def unseal(self, name: str) -> bytes:
        """The secret stored under name; KeyStoreError if absent or refused."""
        ...


class GatewayKeyStore(KeyStore, SecretStore, Protocol):
    """What open_keystore returns: identity key, sealed secrets, and a close()."""

    def close(self) -> None:
        """Release the key store's resources (TPM connection)."""
        ...


class SoftwareKeyStore:
    """The identity key in a PEM file on disk: no hardware protection.

    With a passphrase the key file is PKCS#8-encrypted and sealed secrets are
    AES-GCM boxes under a scrypt key from the same passphrase; without one,
    the key is plaintext and sealing is refused.
    """

    hardware_backed = False

    def __init__(self, key_path: Path, passphrase: bytes | None = None,
                 sealed_dir: Path | None = None) -> None:
        self.key_path = key_path
        self._passphrase = passphrase or None
        self._sealed_dir = sealed_dir
        self._key, self.key_encrypted = _load_pem_key(key_path, self._passphrase)
        if key_path.stat().st_mode & (stat.S_IRWXG | stat.S_IRWXO):
            log.warning("identity key %s is readable by group/others; chmod 600 it", key_path)
        if self.key_encrypted:
            log.warning("identity key held in SOFTWARE (%s, passphrase-encrypted): "
                        "no TPM protection; anyone with the passphrase can copy it", key_path)
        else:
            log.warning("identity key held in SOFTWARE, UNENCRYPTED (%s): no TPM protection, "
                        "a copy of the file is a copy of the gateway's identity", key_path)

    @classmethod
    def generate(cls, key_path: Path, passphrase: bytes,
                 sealed_dir: Path | None = None) -> SoftwareKeyStore:
        """Create a new P-256 key in a passphrase-encrypted PKCS#8 file (refuses to overwrite)."""
        if key_path.exists():
            raise KeyStoreError(f"identity key {key_path} exists; refusing to overwrite it")
        write_encrypted_key(ec.generate_private_key(ec.SECP256R1()), key_path, passphrase)
        return cls(key_path, passphrase, sealed_dir)

    def sign_der(self, data: bytes) -> bytes:
        """Sign with the file key."""
        return self._key.sign(data, ec.ECDSA(hashes.SHA256()))

    def public_key(self) -> ec.EllipticCurvePublicKey:
        """The public half of the file key."""
        return self._key.public_key()

    def seal(self, name: str, secret: bytes) -> None:
        """Encrypt secret under the passphrase into <sealed_dir>/<name>.sealed."""
        passphrase, path = self._sealing(name)
        write_private(path, passbox.seal(secret, passphrase, _associated(name)))

    def unseal(self, name: str) -> bytes:
        """Decrypt the secret sealed under name."""
        passphrase, path = self._sealing(name)
        try:
            return passbox.open_box(path.read_bytes(), passphrase, _associated(name))
        except FileNotFoundError:
            raise SecretMissing(f"no sealed secret {name!r} in {path.parent}") from None
        except passbox.BoxError as exc:
            raise KeyStoreError(f"sealed secret {name!r} ({path}): {exc}") from None

    def close(self) -> None:
        """Nothing to release."""

    def _sealing(self, name: str) -> tuple[bytes, Path]:
        if self._passphrase is None:
            raise KeyStoreError("software sealing needs a passphrase "
                                "(identity.passphrase_env or identity.passphrase_file)")
        if self._sealed_dir is None:
            raise KeyStoreError("no directory for sealed secrets configured")
        try:
            return self._passphrase, secret_path(self._sealed_dir, name, SEALED_SUFFIX)
        except SecretNameError as exc:
            raise KeyStoreError(str(exc)) from None


def write_encrypted_key(key: ec.EllipticCurvePrivateKey, path: Path, passphrase: bytes) -> None:
    """Write key as passphrase-encrypted PKCS#8 PEM (mode 0600), e.g. to migrate a plain file."""
    if not passphrase:
        raise KeyStoreError("an empty passphrase cannot encrypt the identity key")
    write_private(path, key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(passphrase)))


def _load_pem_key(path: Path, passphrase: bytes | None) -> tuple[ec.EllipticCurvePrivateKey,
                                                                    bool]:
    """The key in path and whether the file was encrypted; KeyStoreError says why not."""
    try:
        pem = path.read_bytes()
    except FileNotFoundError:
        raise KeyStoreError(f"identity key {path} not found") from None
    encrypted = b"-----BEGIN ENCRYPTED PRIVATE KEY-----" in pem or b"Proc-Type: 4,ENCRYPTED" in pem
    if encrypted and passphrase is None:
        raise KeyStoreError(f"identity key {path} is encrypted: set its passphrase "
                            "(identity.passphrase_env or identity.passphrase_file)")
    try:
        key = serialization.load_pem_private_key(pem, password=passphrase if encrypted else None)
    except ValueError as exc:
        if encrypted:
            raise KeyStoreError(f"identity key {path}: wrong passphrase "
                                "(or a corrupt file)") from None
        raise KeyStoreError(f"identity key {path} is not a PEM private key: {exc}") from None
    if not isinstance(key, ec.EllipticCurvePrivateKey) or key.curve.name != "secp256r1":
        raise KeyStoreError(f"identity key {path} must be an EC P-256 key")
    return key, encrypted


def _associated(name: str) -> bytes:
    return b"tandem-sealed-secret:" + name.encode()


def passphrase_from(env_name: str, file: Path | None,
                    environ: Mapping[str, str] | None = None) -> bytes | None:
    """The key-store passphrase from an environment variable or a file (first line)."""
    env = os.environ if environ is None else environ
    if env_name:
        if env_name not in env:
            raise KeyStoreError(f"passphrase variable {env_name} is not set")
        return env[env_name].encode()
    if file is not None:
        try:
            text = file.read_bytes().splitlines()
        except OSError as exc:
            raise KeyStoreError(f"passphrase file {file}: {exc.strerror}") from None
        if not text or not text[0]:
            raise KeyStoreError(f"passphrase file {file} is empty")
        return text[0]
    return None
