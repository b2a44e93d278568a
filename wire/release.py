"""A signed policy release: COSE_Sign1 (wire.cose) by the cloud's policy key over

    {"v": 1, "group": text, "ver": uint >= 1, "issued": unix_ms, "doc": policy map}

The kid names the policy key (`policy_key_id`: "pk-" + 16 hex of SHA-256 of
its SubjectPublicKeyInfo); a gateway trusts exactly the key it was given at
enrolment, so a release signed by any other key is refused as unknown_key,
and one whose bytes were altered as signature.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

import cbor2
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from tandem.wire import strictcbor
from tandem.wire.cose import Signer, sign1, verify1
from tandem.wire.errors import WireError
from tandem.wire.policy import PolicyDocument, PolicyError, parse_policy, to_plain

RELEASE_VERSION = 1
MAX_RELEASE_BYTES = 256 * 1024


@dataclass(frozen=True, slots=True)
class Release:
    """Version `version` of the policy of gateway group `group`."""

    group: str
    version: int
    issued_ms: int
    doc: PolicyDocument


def policy_key_id(public: ec.EllipticCurvePublicKey) -> str:
    """The kid of a policy key."""
    der = public.public_bytes(serialization.Encoding.DER,
                              serialization.PublicFormat.SubjectPublicKeyInfo)
    return "pk-" + hashlib.sha256(der).hexdigest()[:16]


def sign_release(release: Release, signer: Signer, public: ec.EllipticCurvePublicKey) -> bytes:
    """The COSE_Sign1 envelope of release, signed by the policy key."""
    payload = cbor2.dumps({"v": RELEASE_VERSION, "group": release.group, "ver": release.version,
                           "issued": release.issued_ms, "doc": to_plain(release.doc)},
                          canonical=True)
    return sign1(payload, policy_key_id(public), signer)


def open_signed(envelope: bytes, trusted: ec.EllipticCurvePublicKey, max_bytes: int,
                version: int, what: str) -> dict[Any, Any]:
    """The payload map of an envelope signed by the one trusted policy key, at `version`.

    Shared by every release the policy key signs (policies, model releases);
    WireError says why not (too_large, unknown_key, signature, schema).
    """
    if len(envelope) > max_bytes:
        raise WireError("too_large", f"{what} of {len(envelope)} bytes")
    kid = policy_key_id(trusted)
    verified = verify1(envelope, lambda k: trusted if k == kid else None)
    obj = strictcbor.loads(verified.payload)
    if not isinstance(obj, dict) or obj.get("v") != version:
        raise WireError("schema", f"not a version-{version} {what}")
    return obj


def open_release(envelope: bytes, trusted: ec.EllipticCurvePublicKey) -> Release:
    """Verify envelope against the one trusted key and decode it; WireError says why not."""
    obj = open_signed(envelope, trusted, MAX_RELEASE_BYTES, RELEASE_VERSION, "policy release")
    group, version, issued, doc = (obj.get(k) for k in ("group", "ver", "issued", "doc"))
    if not isinstance(group, str) or not 0 < len(group) <= 64 \
            or type(version) is not int or version < 1 or type(issued) is not int \
            or not isinstance(doc, dict):
        raise WireError("schema", "policy release needs group, ver >= 1, issued and doc")
    try:
        return Release(group, version, issued, parse_policy(doc))
    except PolicyError as exc:
        raise WireError("schema", f"policy: {exc}") from None
