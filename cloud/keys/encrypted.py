"""`EncryptedText`: a text column stored AES-256-GCM encrypted, under a key from cloud/keys/kms.py.

Stored form: `<key id>:<base64url(12-byte nonce || ciphertext || tag)>`. The
key id lets keys rotate (old rows name their key); the associated data binds
the value to its column's purpose, so a ciphertext copied into another
column does not decrypt. Encrypted columns can be neither searched nor
indexed: keep what a query needs in plain columns.
"""

from __future__ import annotations

import base64
import os
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from sqlalchemy import Text
from sqlalchemy.types import TypeDecorator

from tandem.cloud.keys.kms import KeyProvider, provider_of

NONCE_BYTES = 12


class DecryptionError(ValueError):
    """A stored value that does not decrypt (wrong key, other column, or tampered)."""


def seal(provider: KeyProvider, purpose: str, plaintext: str) -> str:
    """Encrypt plaintext under the provider's current key, bound to purpose."""
    key_id = provider.current_key_id
    nonce = os.urandom(NONCE_BYTES)
    sealed = AESGCM(provider.data_key(key_id)).encrypt(
        nonce, plaintext.encode("utf-8"), _associated(purpose, key_id))
    return f"{key_id}:{base64.urlsafe_b64encode(nonce + sealed).decode('ascii')}"


def unseal(provider: KeyProvider, purpose: str, stored: str) -> str:
    """Decrypt a value written by `seal`; raise DecryptionError if it does not check out."""
    key_id, _, body = stored.partition(":")
    try:
        raw = base64.urlsafe_b64decode(body.encode("ascii"))
        plain = AESGCM(provider.data_key(key_id)).decrypt(
            raw[:NONCE_BYTES], raw[NONCE_BYTES:], _associated(purpose, key_id))
        return plain.decode("utf-8")
    except (ValueError, InvalidTag) as exc:
        raise DecryptionError(f"{purpose}: value under key {key_id!r} does not decrypt "
                              f"({type(exc).__name__})") from None


def key_id_of(stored: str) -> str:
    """The id of the key a stored value was encrypted with."""
    return stored.partition(":")[0]


class EncryptedText(TypeDecorator[str]):
    """Text encrypted at rest; `purpose` (e.g. "users.email") is bound into each value."""

    impl = Text
    cache_ok = True

    def __init__(self, purpose: str) -> None:
        super().__init__()
        self.purpose = purpose

    def process_bind_param(self, value: str | None, dialect: Any) -> str | None:
        """Encrypt on the way into the database."""
        if value is None:
            return None
        return seal(provider_of(dialect), self.purpose, value)

    def process_result_value(self, value: Any | None, dialect: Any) -> str | None:
        """Decrypt on the way out."""
        if value is None:
            return None
        return unseal(provider_of(dialect), self.purpose, str(value))


def _associated(purpose: str, key_id: str) -> bytes:
    return f"tandem/{purpose}/{key_id}".encode()
