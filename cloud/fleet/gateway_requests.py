"""Checking requests signed by a registered gateway (policy fetch and ack, renewal).

The signature is checked with the key the registry holds for the gateway, so
an unknown or revoked gateway is refused exactly as its batches are.
"""

from __future__ import annotations

import base64

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from flask import current_app, request

from tandem.cloud.config import CloudConfig
from tandem.cloud.db import engine as database
from tandem.cloud.errors import Rejection
from tandem.cloud.fleet import registry
from tandem.cloud.timestamps import now_ms
from tandem.wire.errors import WireError
from tandem.wire.gwrequest import SIGNED_HEADER, GatewayRequest, open_request

MAX_REQUEST_BYTES = 64 * 1024
_FAULTS = {"unknown_key": (403, "unknown_gateway"), "signature": (401, "bad_signature"),
           "stale": (401, "stale_request")}


def signed_request(op: str) -> GatewayRequest:
    """The verified request of this HTTP call (body, or the header for GETs); Rejection if not."""
    if request.method == "GET":
        try:
            raw = base64.urlsafe_b64decode(request.headers.get(SIGNED_HEADER, "") + "==")
        except ValueError:
            raise Rejection(400, "malformed", f"{SIGNED_HEADER} is not base64url") from None
    else:
        if (request.content_length or 0) > MAX_REQUEST_BYTES:
            raise Rejection(413, "too_large", f"over {MAX_REQUEST_BYTES} bytes")
        raw = request.get_data(cache=False)
    config: CloudConfig = current_app.config["TANDEM"]
    try:
        return open_request(raw, registered_key, op, now_ms(),
                            config.enrol.request_skew_s * 1000)
    except WireError as exc:
        status, code = _FAULTS.get(exc.reason, (400, "malformed"))
        raise Rejection(status, code, exc.detail) from None


def registered_key(gateway: str) -> ec.EllipticCurvePublicKey | None:
    """The active gateway's key (batches and signed requests alike); None if unknown.

    Raises Rejection for a revoked gateway or one registered without an EC key.
    """
    with database.read_session() as session:
        found = registry.find_gateway(session, gateway)
    if found is None:
        return None
    if not found.active:
        raise Rejection(403, "revoked_gateway", f"gateway {gateway!r} is revoked")
    key = serialization.load_pem_public_key(found.public_key_pem.encode())
    if not isinstance(key, ec.EllipticCurvePublicKey):
        raise Rejection(403, "unknown_gateway", f"gateway {gateway!r} has no EC key")
    return key
