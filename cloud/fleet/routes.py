"""Enrolment endpoints: a CSR with an installer token, or a renewal signed by the current key.

    POST /enrol/v1/csr     Authorization: Bearer tdi_...   {"csr": PEM}
    POST /enrol/v1/renew   COSE_Sign1 by the gateway (op "renew", body {"csr": PEM})

Both answer `{"gateway", "group", "cert", "ca", "serial", "policy_key", "data_key"}`:
the certificate for the CSR's key, the CA that issued it, and the public keys
the gateway must trust for policies and encrypt sealed fields to. The
gateway's key is registered (so its batches verify) in the same transaction
that uses up the token and writes the audit entry.
"""

from __future__ import annotations

from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from flask import Blueprint, Flask, Response, current_app, jsonify, request

from tandem.cloud.access.auth import Principal, add_token_resolver, public, require
from tandem.cloud.access.permissions import Permission
from tandem.cloud.audit import record as audit
from tandem.cloud.config import CloudConfig
from tandem.cloud.db import engine as database
from tandem.cloud.errors import Rejection
from tandem.cloud.fleet import registry
from tandem.cloud.fleet import tokens as enrol_store
from tandem.cloud.fleet.enrolment import EnrolmentError, check_gateway_cert
from tandem.cloud.fleet.gateway_requests import signed_request
from tandem.cloud.fleet.issuer import IssueError, certify, issuing_ca
from tandem.cloud.keys.keyfiles import KeyFileError, load_private_key, public_pem
from tandem.cloud.timestamps import now_ms

bp = Blueprint("enrol", __name__, url_prefix="/enrol/v1")
GATEWAY_RENEW = "gateway.renew"


def init_app(app: Flask) -> None:
    """Accept installer tokens as bearer credentials (role installer: gateway:enrol only)."""
    add_token_resolver(app, enrol_store.TOKEN_PREFIX, _installer)
    app.register_blueprint(bp)


def _installer(secret: str) -> Principal | None:
    with database.read_session() as session:
        grant = enrol_store.find_grant(session, secret, now_ms())
    if grant is None:
        return None
    return Principal(kind="installer", name=grant.gateway, role="installer", via="bearer")


@bp.post("/csr")
@require(Permission.GATEWAY_ENROL)
def enrol() -> tuple[Response, int]:
    """Certify and register the gateway the installer token names."""
    secret = request.headers.get("Authorization", "").partition(" ")[2].strip()
    now = now_ms()
    with database.read_session() as session:
        grant = enrol_store.find_grant(session, secret, now)
    if grant is None:
        raise Rejection(401, "invalid_token", "the installer token is unknown, used or expired")
    cert = _certify(_csr_from_json(), grant.gateway)
    with database.sessions().begin() as session:
        if not enrol_store.consume(session, grant, now):
            raise Rejection(401, "invalid_token", "the installer token was used meanwhile")
        _register(session, grant.gateway, cert, now)
        enrol_store.set_group(session, grant.gateway, grant.group)
        audit.record(audit.GATEWAY_ENROL, session=session, detail={
            "gateway": grant.gateway, "group": grant.group, "serial": _serial(cert)})
    return jsonify(_answer(grant.gateway, grant.group, cert)), 200


@bp.post("/renew")
@public("authenticated by a COSE signature of the gateway's registered key", csrf=False)
def renew() -> tuple[Response, int]:
    """Certify a new CSR of a registered gateway (same or new key) and register that key."""
    signed = signed_request("renew")
    csr = signed.body.get("csr")
    if not isinstance(csr, str):
        raise Rejection(422, "bad_csr", "body needs csr (PEM text)")
    cert = _certify(csr.encode(), signed.gateway)
    now = now_ms()
    with database.sessions().begin() as session:
        _register(session, signed.gateway, cert, now)
        group = enrol_store.group_of(session, signed.gateway)
        audit.record(GATEWAY_RENEW, actor=f"gateway:{signed.gateway}", session=session,
                     detail={"gateway": signed.gateway, "serial": _serial(cert)})
    return jsonify(_answer(signed.gateway, group, cert)), 200


def _csr_from_json() -> bytes:
    body = request.get_json(silent=True)
    if not isinstance(body, dict) or not isinstance(body.get("csr"), str):
        raise Rejection(422, "bad_csr", 'send {"csr": "<PEM>"} as JSON')
    return str(body["csr"]).encode()


def _certify(csr_pem: bytes, gateway: str) -> x509.Certificate:
    try:
        return certify(_config(), csr_pem, gateway)
    except IssueError as exc:
        raise Rejection(422, "bad_csr", str(exc)) from None


def _register(session: Any, gateway: str, cert: x509.Certificate, now: int) -> None:
    cert_pem = cert.public_bytes(serialization.Encoding.PEM)
    ca_pem = issuing_ca(_config()).cert.public_bytes(serialization.Encoding.PEM)
    try:
        identity = check_gateway_cert(gateway, cert_pem, ca_pem)
    except EnrolmentError as exc:
        raise Rejection(422, "bad_csr", str(exc)) from None
    existing = registry.find_gateway(session, gateway)
    if existing is not None and not existing.active \
            and existing.public_key_pem == identity.public_key_pem:
        raise Rejection(403, "revoked_key", f"the key of {gateway!r} was revoked; make a new one")
    if existing is not None and existing.status == registry.GatewayStatus.REVOKED.value:
        # an installer token must not undo a revocation: that is an admin's decision
        raise Rejection(403, "revoked_gateway", f"{gateway!r} is revoked; an admin must "
                        "re-admit it (POST /api/v1/gateways/<name>/readmit) before it enrols")
    registry.add_gateway(session, gateway, identity.cert_pem, identity.public_key_pem,
                         identity.fingerprint, now, replace=True)


def _answer(gateway: str, group: str, cert: x509.Certificate) -> dict[str, Any]:
    config = _config()
    return {"gateway": gateway, "group": group, "serial": _serial(cert),
            "cert": cert.public_bytes(serialization.Encoding.PEM).decode(),
            "ca": issuing_ca(config).cert.public_bytes(serialization.Encoding.PEM).decode(),
            "policy_key": _public_of(config.policy.signing_key, config.policy.passphrase_env),
            "data_key": _public_of(config.policy.data_key, config.policy.passphrase_env)}


def _public_of(path: Any, passphrase_env: str) -> str | None:
    if path is None:
        return None
    try:
        return public_pem(load_private_key(path, passphrase_env).public_key())
    except KeyFileError as exc:
        raise Rejection(503, "key_unavailable", str(exc)) from None


def _serial(cert: x509.Certificate) -> str:
    return f"{cert.serial_number:x}"


def _config() -> CloudConfig:
    config: CloudConfig = current_app.config["TANDEM"]
    return config
