"""Envelope encryption of record fields for the cloud: ECDH-ES + HKDF + A256KW, then AES-256-GCM.

Each sealed record has its own data key (32 random bytes). The data key is
wrapped for the recipient (the cloud's data key pair, P-256):

    epk     = fresh ephemeral P-256 key pair, public half sent (65 bytes, uncompressed)
    z       = ECDH(ephemeral private, recipient public)
    kek     = HKDF-SHA256(z, salt = "", info = INFO || kid || epk, 32 bytes)
    wk      = AES-KW(kek, data key)                                   (RFC 3394, 40 bytes)
    ct      = AES-256-GCM(data key, iv, CBOR(hidden fields), aad)     (tag included)
    aad     = CBOR ["tandem-sealed-v1", dev, of, name, t, kid, epk]

so the visible routing fields (device, kind, name, time) cannot be swapped
between records. The hidden fields are, for a summary, its statistics
`{"t1", "n", "min", "max", "mean", "last"}`; for an event, `{"vals": {...}}`
with the values the policy encrypts. Only the holder of the recipient's
private key (the cloud, `tandem-cloud sealed show`) can open them.
"""

from __future__ import annotations

import hashlib
import os
from typing import Any

import cbor2
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.hazmat.primitives.keywrap import InvalidUnwrap, aes_key_unwrap, aes_key_wrap

from tandem.wire import strictcbor
from tandem.wire.batch import Event, Sealed, Summary
from tandem.wire.errors import WireError

INFO = b"tandem-sealed-v1 ECDH-ES+A256KW "
AAD_LABEL = "tandem-sealed-v1"


def key_id(public: ec.EllipticCurvePublicKey) -> str:
    """A short stable name of a recipient key: "dk-" + 16 hex of SHA-256(SPKI)."""
    der = public.public_bytes(serialization.Encoding.DER,
                              serialization.PublicFormat.SubjectPublicKeyInfo)
    return "dk-" + hashlib.sha256(der).hexdigest()[:16]


def seal_summary(summary: Summary, recipient: ec.EllipticCurvePublicKey) -> Sealed:
    """The summary with its statistics encrypted (device, channel and t0 stay visible)."""
    hidden = {"t1": summary.t1_ms, "n": summary.count, "min": summary.minimum,
              "max": summary.maximum, "mean": summary.mean, "last": summary.last}
    return seal_fields(summary.device, "s", summary.channel, summary.t0_ms, hidden, recipient)


def seal_event_values(event: Event, values: dict[str, float],
                      recipient: ec.EllipticCurvePublicKey) -> Sealed:
    """Some values of an event, encrypted; the event itself travels without them."""
    return seal_fields(event.device, "e", event.name, event.t_ms, {"vals": values}, recipient)


def seal_fields(device: str, of: str, name: str, t_ms: int, hidden: dict[str, Any],
                recipient: ec.EllipticCurvePublicKey) -> Sealed:
    """Encrypt hidden (a CBOR-able map) under a fresh data key wrapped for recipient."""
    kid = key_id(recipient)
    ephemeral = ec.generate_private_key(ec.SECP256R1())
    epk = _point(ephemeral.public_key())
    data_key, nonce = os.urandom(32), os.urandom(12)
    wrapped = aes_key_wrap(_kek(ephemeral.exchange(ec.ECDH(), recipient), kid, epk), data_key)
    aad = _aad(device, of, name, t_ms, kid, epk)
    ciphertext = AESGCM(data_key).encrypt(nonce, cbor2.dumps(hidden, canonical=True), aad)
    return Sealed(device, of, name, t_ms, kid, epk, wrapped, nonce, ciphertext)


def open_sealed(sealed: Sealed, private: ec.EllipticCurvePrivateKey) -> dict[str, Any]:
    """The hidden fields of a sealed record; WireError("sealed") if this key cannot open it."""
    if key_id(private.public_key()) != sealed.kid:
        raise WireError("sealed", f"sealed for key {sealed.kid}, not this one")
    try:
        peer = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), sealed.epk)
        kek = _kek(private.exchange(ec.ECDH(), peer), sealed.kid, sealed.epk)
        data_key = aes_key_unwrap(kek, sealed.wrapped)
        plain = AESGCM(data_key).decrypt(sealed.nonce, sealed.ciphertext, _aad(
            sealed.device, sealed.of, sealed.name, sealed.t_ms, sealed.kid, sealed.epk))
    except (ValueError, InvalidUnwrap, InvalidTag):
        raise WireError("sealed", "the sealed record does not open (altered or wrong key)") \
            from None
    hidden = strictcbor.loads(plain)
    if not isinstance(hidden, dict):
        raise WireError("sealed", "sealed content is not a map")
    return hidden


def _kek(shared: bytes, kid: str, epk: bytes) -> bytes:
    return HKDF(hashes.SHA256(), 32, salt=None, info=INFO + kid.encode() + epk).derive(shared)


def _aad(device: str, of: str, name: str, t_ms: int, kid: str, epk: bytes) -> bytes:
    return cbor2.dumps([AAD_LABEL, device, of, name, t_ms, kid, epk])


def _point(public: ec.EllipticCurvePublicKey) -> bytes:
    return public.public_bytes(serialization.Encoding.X962,
                               serialization.PublicFormat.UncompressedPoint)
