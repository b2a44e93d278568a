"""Requests a gateway signs with its identity key: policy fetch and ack, certificate renewal.

    COSE_Sign1(kid = gateway id) over {"op": text, "gw": gateway id, "t": unix_ms, "body": map}

The cloud checks the signature with the key it registered for the gateway
(so a revoked or unknown gateway is refused), that `op` is the operation of
the endpoint (a signed ack cannot be replayed as a renewal) and that `t` is
within the allowed clock skew (a captured request goes stale).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import cbor2

from tandem.wire import strictcbor
from tandem.wire.cose import KeyLookup, Signer, sign1, verify1
from tandem.wire.errors import WireError

MEDIA_TYPE = 'application/cose; cose-type="cose-sign1"'
# The header a GET carries its signed request in (base64url), where it has no body.
SIGNED_HEADER = "X-Tandem-Signed"


@dataclass(frozen=True, slots=True)
class GatewayRequest:
    """A verified request: who asked, for what, when, with which arguments."""

    gateway: str
    op: str
    t_ms: int
    body: dict[str, Any]


def sign_request(op: str, gateway: str, body: dict[str, Any], t_ms: int,
                 signer: Signer) -> bytes:
    """The signed request envelope."""
    payload = cbor2.dumps({"op": op, "gw": gateway, "t": t_ms, "body": body}, canonical=True)
    return sign1(payload, gateway, signer)


def open_request(envelope: bytes, key_for: KeyLookup, op: str, now_ms: int,
                 skew_ms: int) -> GatewayRequest:
    """Verify and decode; WireError("signature"|"unknown_key"|"schema"|"stale") otherwise."""
    verified = verify1(envelope, key_for)
    obj = strictcbor.loads(verified.payload)
    if not isinstance(obj, dict) or not isinstance(obj.get("body"), dict) \
            or type(obj.get("t")) is not int:
        raise WireError("schema", "request needs op, gw, t and a body map")
    if obj.get("gw") != verified.kid:
        raise WireError("schema", "request names another gateway than its signer")
    if obj.get("op") != op:
        raise WireError("schema", f"request is for {obj.get('op')!r}, not {op!r}")
    if abs(obj["t"] - now_ms) > skew_ms:
        raise WireError("stale", f"request time is {(obj['t'] - now_ms) // 1000} s off")
    return GatewayRequest(verified.kid, op, obj["t"], obj["body"])
