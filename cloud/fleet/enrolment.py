"""Admitting a gateway: check its certificate against the site CA and take its public key."""

from __future__ import annotations

import datetime as dt
import hashlib
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.verification import PolicyBuilder, Store, VerificationError

from tandem.wire.certprofile import CURVE, ProfileError, Role, certified_name


class EnrolmentError(ValueError):
    """A certificate that may not identify the named gateway."""


@dataclass(frozen=True, slots=True)
class GatewayIdentity:
    """What the registry stores about a gateway whose certificate checked out."""

    name: str
    cert_pem: str
    public_key_pem: str
    fingerprint: str


def check_gateway_cert(name: str, cert_pem: bytes, trust_ca_pem: bytes,
                       now: dt.datetime | None = None) -> GatewayIdentity:
    """Verify cert_pem chains to the trust CA and names gateway `name`; raise EnrolmentError."""
    cert = _load_cert(cert_pem, "gateway certificate")
    ca_certs = _load_ca(trust_ca_pem)
    _verify_chain(cert, ca_certs, now or dt.datetime.now(dt.UTC))
    _check_subject(cert, name)
    key = cert.public_key()
    if not isinstance(key, ec.EllipticCurvePublicKey) or key.curve.name != CURVE:
        raise EnrolmentError("gateway key must be ECDSA P-256 (COSE ES256)")
    return GatewayIdentity(
        name=name,
        cert_pem=cert.public_bytes(serialization.Encoding.PEM).decode(),
        public_key_pem=key.public_bytes(serialization.Encoding.PEM,
                                        serialization.PublicFormat.SubjectPublicKeyInfo).decode(),
        fingerprint=fingerprint(key),
    )


def fingerprint(key: ec.EllipticCurvePublicKey) -> str:
    """sha256:<hex> of the DER SubjectPublicKeyInfo."""
    der = key.public_bytes(serialization.Encoding.DER,
                           serialization.PublicFormat.SubjectPublicKeyInfo)
    return "sha256:" + hashlib.sha256(der).hexdigest()


def _load_cert(pem: bytes, what: str) -> x509.Certificate:
    try:
        return x509.load_pem_x509_certificate(pem)
    except ValueError as exc:
        raise EnrolmentError(f"{what} is not a PEM certificate: {exc}") from None


def _load_ca(pem: bytes) -> list[x509.Certificate]:
    try:
        certs = x509.load_pem_x509_certificates(pem)
    except ValueError as exc:
        raise EnrolmentError(f"trust CA is not a PEM certificate: {exc}") from None
    return certs


def _verify_chain(cert: x509.Certificate, ca_certs: list[x509.Certificate],
                  now: dt.datetime) -> None:
    verifier = PolicyBuilder().store(Store(ca_certs)).time(now).build_client_verifier()
    try:
        verifier.verify(cert, [])
    except VerificationError as exc:
        raise EnrolmentError(f"certificate does not chain to the trust CA: {exc}") from None


def _check_subject(cert: x509.Certificate, name: str) -> None:
    try:
        certified = certified_name(cert, Role.GATEWAY)
    except ProfileError as exc:
        raise EnrolmentError(f"not a gateway certificate: {exc}") from None
    if certified != name:
        raise EnrolmentError(f"certificate CN is {certified!r}, not {name!r}")
