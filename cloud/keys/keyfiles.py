"""Private keys the cloud holds in files (CA key, policy key, data key), optionally encrypted."""

from __future__ import annotations

import os
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec


class KeyFileError(Exception):
    """A key file that is missing, unreadable, encrypted without a passphrase, or not P-256."""


def load_private_key(path: Path, passphrase_env: str = "", what: str = "key"
                     ) -> ec.EllipticCurvePrivateKey:
    """The EC P-256 key in path (PEM, PKCS#8 or SEC1); its passphrase from $passphrase_env."""
    try:
        pem = path.read_bytes()
    except OSError as exc:
        raise KeyFileError(f"{what} {path}: {exc.strerror or exc}") from None
    password = None
    if passphrase_env:
        if passphrase_env not in os.environ:
            raise KeyFileError(f"{what} {path}: passphrase variable {passphrase_env} is not set")
        password = os.environ[passphrase_env].encode()
    try:
        key = serialization.load_pem_private_key(pem, password=password)
    except (ValueError, TypeError) as exc:
        raise KeyFileError(f"{what} {path}: cannot load ({exc})") from None
    if not isinstance(key, ec.EllipticCurvePrivateKey) or key.curve.name != "secp256r1":
        raise KeyFileError(f"{what} {path}: must be an EC P-256 key")
    return key


def write_new_key(path: Path, passphrase: bytes | None = None) -> ec.EllipticCurvePrivateKey:
    """Create a P-256 key in path (mode 0600, PKCS#8, encrypted if a passphrase is given)."""
    if path.exists():
        raise KeyFileError(f"{path} exists; refusing to overwrite a key")
    key = ec.generate_private_key(ec.SECP256R1())
    encryption: serialization.KeySerializationEncryption = \
        serialization.BestAvailableEncryption(passphrase) if passphrase \
        else serialization.NoEncryption()
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                  encryption))
    return key


def public_pem(key: ec.EllipticCurvePublicKey) -> str:
    """SubjectPublicKeyInfo PEM of key."""
    return key.public_bytes(serialization.Encoding.PEM,
                            serialization.PublicFormat.SubjectPublicKeyInfo).decode()
