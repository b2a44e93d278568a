"""COSE_Sign1 (RFC 9052) with ES256: the envelope of every uplink batch.

    18([protected: bstr {1: -7, 4: kid}, unprotected: {}, payload: bstr, signature: bstr])

The signature is ECDSA P-256 over SHA-256 of the Sig_structure
["Signature1", protected, b"", payload], encoded as r || s (64 bytes).
Signing goes through the `Signer` protocol so the key may live in a TPM.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Protocol

import cbor2
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import (
    decode_dss_signature,
    encode_dss_signature,
)

from tandem.wire import strictcbor
from tandem.wire.errors import WireError

COSE_SIGN1_TAG = 18
HEADER_ALG = 1
HEADER_KID = 4
ALG_ES256 = -7
MEDIA_TYPE = 'application/cose; cose-type="cose-sign1"'
MAX_ENVELOPE_BYTES = 8 * 1024 * 1024


class Signer(Protocol):
    """Anything that signs with an ECDSA P-256 key and returns a DER signature."""

    def sign_der(self, data: bytes) -> bytes:
        """Sign SHA-256(data); return the DER-encoded ECDSA signature."""
        ...


@dataclass(frozen=True, slots=True)
class Verified:
    """A COSE_Sign1 whose signature checked out."""

    kid: str
    payload: bytes


def sign1(payload: bytes, kid: str, signer: Signer) -> bytes:
    """Wrap payload in a COSE_Sign1 signed by signer, naming the key by kid."""
    protected = cbor2.dumps({HEADER_ALG: ALG_ES256, HEADER_KID: kid.encode()}, canonical=True)
    r, s = decode_dss_signature(signer.sign_der(_sig_structure(protected, payload)))
    signature = r.to_bytes(32, "big") + s.to_bytes(32, "big")
    return cbor2.dumps(cbor2.CBORTag(COSE_SIGN1_TAG, [protected, {}, payload, signature]))


KeyLookup = Callable[[str], ec.EllipticCurvePublicKey | None]


def verify1(envelope: bytes, key_for: KeyLookup) -> Verified:
    """Check the envelope's signature with the key key_for(kid) returns.

    Raises WireError("cbor"|"cose") for malformed input, ("unknown_key") when
    key_for returns None, and ("signature") when the signature does not verify.
    """
    kid, raw_protected, (payload, signature) = _parse(envelope)
    key = key_for(kid)
    if key is None:
        raise WireError("unknown_key", f"no key registered for {kid!r}")
    if len(signature) != 64:
        raise WireError("signature", "ES256 signature must be 64 bytes")
    der = encode_dss_signature(int.from_bytes(signature[:32], "big"),
                               int.from_bytes(signature[32:], "big"))
    try:
        key.verify(der, _sig_structure(raw_protected, payload), ec.ECDSA(hashes.SHA256()))
    except InvalidSignature:
        raise WireError("signature", f"signature does not verify with the key of {kid!r}") from None
    return Verified(kid=kid, payload=payload)


def own_payload(envelope: bytes) -> bytes:
    """The payload of an envelope this process signed itself (to re-sign it), unverified."""
    _, _, (payload, _) = _parse(envelope)
    return payload


class SoftwareSigner:
    """Signer over a private key held in process memory (tests, dev mode)."""

    def __init__(self, key: ec.EllipticCurvePrivateKey) -> None:
        self._key = key

    def sign_der(self, data: bytes) -> bytes:
        """Sign with the in-memory key."""
        return self._key.sign(data, ec.ECDSA(hashes.SHA256()))


def _sig_structure(protected: bytes, payload: bytes) -> bytes:
    return cbor2.dumps(["Signature1", protected, b"", payload])


def _parse(envelope: bytes) -> tuple[str, bytes, tuple[bytes, bytes]]:
    if len(envelope) > MAX_ENVELOPE_BYTES:
        raise WireError("too_large", f"envelope of {len(envelope)} bytes")
    obj = strictcbor.loads(envelope)
    if not isinstance(obj, cbor2.CBORTag) or obj.tag != COSE_SIGN1_TAG:
        raise WireError("cose", "not a tagged COSE_Sign1 (tag 18)")
    parts = obj.value
    if not isinstance(parts, list | tuple) or len(parts) != 4:
        raise WireError("cose", "COSE_Sign1 must be an array of 4")
    raw_protected, unprotected, payload, signature = parts
    if not all(isinstance(p, bytes) for p in (raw_protected, payload, signature)):
        raise WireError("cose", "protected, payload and signature must be byte strings")
    if not isinstance(unprotected, Mapping):
        raise WireError("cose", "unprotected header must be a map")
    try:
        header = strictcbor.loads(raw_protected)
    except WireError as exc:
        raise WireError("cose", f"protected header: {exc.detail}") from None
    if not isinstance(header, dict) or header.get(HEADER_ALG) != ALG_ES256:
        raise WireError("cose", "protected header must say alg ES256 (-7)")
    kid = header.get(HEADER_KID)
    if not isinstance(kid, bytes) or not 0 < len(kid) <= 64:
        raise WireError("cose", "protected header needs a kid of 1..64 bytes")
    try:
        kid_text = kid.decode()
    except UnicodeDecodeError:
        raise WireError("cose", "kid must be UTF-8") from None
    return kid_text, raw_protected, (payload, signature)
