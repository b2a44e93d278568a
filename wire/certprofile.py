"""The site certificate profile: what a Tandem certificate says, and how one is issued.

One definition for everyone who writes or reads a certificate: the operator
tools issuing from the site CA, the cloud certifying an enrolling gateway's
CSR, the gateway checking a device's DTLS client certificate, the cloud
checking a gateway's certificate. The role is written in the subject's OU,
so a peer can tell a device from a gateway signed by the same CA, and in the
extended key usage, so TLS stacks enforce it. Keys are EC P-256 (COSE ES256,
and what the MicroPython nodes' mbedtls handshake with).
"""

from __future__ import annotations

import datetime as dt
import ipaddress
from dataclasses import dataclass
from enum import StrEnum

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

CURVE = "secp256r1"
DEFAULT_VALID_DAYS = 825  # the longest leaf lifetime browsers and TLS libraries still accept
CA_VALID_DAYS = 3650
_BACKDATE = dt.timedelta(minutes=5)  # tolerate a peer whose clock is a little behind


class Role(StrEnum):
    """What a certificate may be used for; written in the OU and the extended key usage."""

    GATEWAY = "gateway"
    DEVICE = "device"
    SERVER = "server"


USAGES: dict[Role, tuple[x509.ObjectIdentifier, ...]] = {
    Role.GATEWAY: (ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH),
    Role.DEVICE: (ExtendedKeyUsageOID.CLIENT_AUTH,),
    Role.SERVER: (ExtendedKeyUsageOID.SERVER_AUTH,),
}


class ProfileError(ValueError):
    """A name, CSR or certificate outside the profile; `reason` is a stable code."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True)
class Issuer:
    """A CA certificate and its signing key: what certifies a key."""

    cert: x509.Certificate
    key: ec.EllipticCurvePrivateKey


@dataclass(frozen=True)
class CertRequest:
    """What a verified CSR contributes to a certificate: its name and its public key."""

    name: str
    public_key: ec.EllipticCurvePublicKey


def check_name(name: str) -> None:
    """Refuse a name that could not be a CN, a file name and a DNS label at once."""
    if not name or len(name) > 64 or name.startswith(".") \
            or not all(c.isalnum() or c in "-_." for c in name):
        raise ProfileError("bad_name", f"name {name!r}: use 1..64 letters, digits, '-', '_' "
                                       "or '.'")


def new_site_ca(site: str, valid_days: int = CA_VALID_DAYS,
                now: dt.datetime | None = None) -> Issuer:
    """A fresh self-signed site CA (EC P-256, may sign leaves only)."""
    check_name(site)
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, site),
                      x509.NameAttribute(NameOID.COMMON_NAME, f"{site} site CA")])
    start = now or dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name)
        .public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(start - _BACKDATE)
        .not_valid_after(start + dt.timedelta(days=valid_days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False,
                                     False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
        .sign(key, hashes.SHA256())
    )
    return Issuer(cert, key)


def issue(issuer: Issuer, request: CertRequest, role: Role, hosts: tuple[str, ...] = (),
          valid_days: int = DEFAULT_VALID_DAYS, now: dt.datetime | None = None
          ) -> x509.Certificate:
    """A certificate for request's key in role; hosts become extra SANs (DNS or IP)."""
    check_name(request.name)
    subject = x509.Name([
        x509.NameAttribute(NameOID.ORGANIZATION_NAME, _site_of(issuer.cert)),
        x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, role.value),
        x509.NameAttribute(NameOID.COMMON_NAME, request.name)])
    start = now or dt.datetime.now(dt.UTC)
    return (
        x509.CertificateBuilder().subject_name(subject).issuer_name(issuer.cert.subject)
        .public_key(request.public_key).serial_number(x509.random_serial_number())
        .not_valid_before(start - _BACKDATE)
        .not_valid_after(start + dt.timedelta(days=valid_days))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(True, False, False, False, True, False, False, False,
                                     False), critical=True)
        .add_extension(x509.ExtendedKeyUsage(list(USAGES[role])), critical=False)
        .add_extension(x509.SubjectAlternativeName(_sans(request.name, hosts)), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
            issuer.key.public_key()), critical=False)
        .sign(issuer.key, hashes.SHA256())
    )


def read_csr(csr_pem: bytes) -> CertRequest:
    """The name and key of a PEM CSR that proves possession of an EC P-256 key."""
    try:
        csr = x509.load_pem_x509_csr(csr_pem)
    except ValueError as exc:
        raise ProfileError("bad_csr", f"not a PEM CSR: {exc}") from None
    if not csr.is_signature_valid:
        raise ProfileError("bad_csr", "CSR signature does not verify "
                                      "(no proof of key possession)")
    key = csr.public_key()
    if not isinstance(key, ec.EllipticCurvePublicKey) or key.curve.name != CURVE:
        raise ProfileError("bad_key", "CSR key must be EC P-256")
    names = csr.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    if len(names) != 1:
        raise ProfileError("bad_csr", "CSR subject must have exactly one CN")
    name = str(names[0].value)
    check_name(name)
    return CertRequest(name, key)


def certify_csr(issuer: Issuer, csr_pem: bytes, role: Role, hosts: tuple[str, ...] = (),
                valid_days: int = DEFAULT_VALID_DAYS) -> x509.Certificate:
    """Certify the key of a CSR whose private key never left its owner (e.g. a TPM).

    Only the CSR's proof of possession, public key and CN are used; role,
    usages and SANs are the issuer's choice, as for issue().
    """
    return issue(issuer, read_csr(csr_pem), role, hosts, valid_days)


def certified_name(cert: x509.Certificate, role: Role) -> str:
    """The CN of a certificate issued for role; ProfileError(wrong_role | no_name) if not."""
    subject = cert.subject
    roles = [str(a.value) for a in subject.get_attributes_for_oid(
        NameOID.ORGANIZATIONAL_UNIT_NAME)]
    if roles != [role.value]:
        # a device certificate from the same CA must not pass as a gateway, and vice versa
        raise ProfileError("wrong_role", f"role (OU) {roles!r} in {subject.rfc4514_string()}, "
                                         f"not {role.value}")
    names = [str(a.value) for a in subject.get_attributes_for_oid(NameOID.COMMON_NAME)]
    if len(names) != 1 or not names[0]:
        raise ProfileError("no_name", f"no single CN in {subject.rfc4514_string()}")
    return names[0]


def _site_of(ca_cert: x509.Certificate) -> str:
    sites = ca_cert.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)
    if not sites:
        raise ProfileError("bad_issuer", f"issuer {ca_cert.subject.rfc4514_string()} has no O")
    return str(sites[0].value)


def _sans(name: str, hosts: tuple[str, ...]) -> list[x509.GeneralName]:
    sans: list[x509.GeneralName] = [x509.DNSName(name)]
    for host in hosts:
        try:
            sans.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            sans.append(x509.DNSName(host))
    return sans
