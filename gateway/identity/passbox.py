"""Passphrase boxes: AES-256-GCM under a scrypt key, for secrets sealed without a TPM.

A box is CBOR `{"v": 1, "kdf": "scrypt", "n", "r", "p", "salt", "nonce", "ct"}`;
the caller's associated data (the secret's name) is authenticated, so a box
renamed on disk to another secret's name refuses to open. Each box has its own
salt, so no derived key is kept anywhere.
"""

from __future__ import annotations

import os
from typing import Any

import cbor2
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

VERSION = 1
SCRYPT_N = 2**15  # ~50-100 ms on a gateway CPU: boxes are opened at start-up only
SCRYPT_R = 8
SCRYPT_P = 1


class BoxError(Exception):
    """The box is malformed, or the passphrase or name does not open it."""


def seal(secret: bytes, passphrase: bytes, associated: bytes) -> bytes:
    """Encrypt secret under passphrase; associated data is bound but not stored."""
    if not passphrase:
        raise BoxError("an empty passphrase cannot seal")
    salt, nonce = os.urandom(16), os.urandom(12)
    key = _derive(passphrase, salt, SCRYPT_N, SCRYPT_R, SCRYPT_P)
    ct = AESGCM(key).encrypt(nonce, secret, associated)
    return cbor2.dumps({"v": VERSION, "kdf": "scrypt", "n": SCRYPT_N, "r": SCRYPT_R,
                        "p": SCRYPT_P, "salt": salt, "nonce": nonce, "ct": ct})


def open_box(box: bytes, passphrase: bytes, associated: bytes) -> bytes:
    """Decrypt a box made by seal(); BoxError on any mismatch."""
    fields = _parse(box)
    key = _derive(passphrase, fields["salt"], fields["n"], fields["r"], fields["p"])
    try:
        return AESGCM(key).decrypt(fields["nonce"], fields["ct"], associated)
    except InvalidTag:
        raise BoxError("wrong passphrase, or the box was renamed or altered") from None


def _parse(box: bytes) -> dict[str, Any]:
    try:
        fields = cbor2.loads(box)
    except (cbor2.CBORDecodeError, ValueError) as exc:
        raise BoxError(f"not a passphrase box: {exc}") from None
    if not isinstance(fields, dict) or fields.get("v") != VERSION \
            or fields.get("kdf") != "scrypt":
        raise BoxError("not a version-1 scrypt passphrase box")
    types = {"n": int, "r": int, "p": int, "salt": bytes, "nonce": bytes, "ct": bytes}
    if not all(isinstance(fields.get(k), t) for k, t in types.items()):
        raise BoxError("passphrase box is missing fields")
    if not (2**10 <= fields["n"] <= 2**20 and fields["r"] <= 32 and fields["p"] <= 16):
        raise BoxError("passphrase box has out-of-range scrypt parameters")
    return fields


def _derive(passphrase: bytes, salt: bytes, n: int, r: int, p: int) -> bytes:
    return Scrypt(salt=salt, length=32, n=n, r=r, p=p).derive(passphrase)
