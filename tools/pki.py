"""Site PKI: one CA per site issuing gateway, device and server certificates.

Layout of a PKI directory (private keys are written 0600 and never committed):

    ca.pem  ca.der  ca.key.pem
    gateway/<name>/cert.pem key.pem
    server/<name>/cert.pem key.pem
    device/<name>/cert.pem key.pem cert.der key.der ca.der   (DER for MicroPython)

The role is written in the certificate's OU so a gateway can tell a device
from another gateway, and in the extended key usage so TLS stacks enforce it.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID


class Role(StrEnum):
    """What a certificate may be used for."""

    GATEWAY = "gateway"
    DEVICE = "device"
    SERVER = "server"


_USAGES = {
    Role.GATEWAY: [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH],
    Role.DEVICE: [ExtendedKeyUsageOID.CLIENT_AUTH],
    Role.SERVER: [ExtendedKeyUsageOID.SERVER_AUTH],
}


class PKIError(Exception):
    """A PKI operation that cannot be done (missing CA, name taken, bad name)."""


@dataclass(frozen=True)
class Identity:
    """Paths of one issued identity."""

    name: str
    role: Role
    directory: Path

    @property
    def cert_pem(self) -> Path:
        return self.directory / "cert.pem"

    @property
    def key_pem(self) -> Path:
        return self.directory / "key.pem"

    @property
    def cert_der(self) -> Path:
        return self.directory / "cert.der"

    @property
    def key_der(self) -> Path:
        return self.directory / "key.der"

    @property
    def ca_der(self) -> Path:
        return self.directory / "ca.der"


class SiteCA:
    """A site certificate authority stored in a directory."""

    def __init__(self, directory: Path, cert: x509.Certificate,
                 key: ec.EllipticCurvePrivateKey) -> None:
        self.directory = directory
        self.cert = cert
        self._key = key

    @property
    def cert_pem_path(self) -> Path:
        return self.directory / "ca.pem"

    @classmethod
    def create(cls, directory: Path, site: str, valid_days: int = 3650) -> SiteCA:
        """Create a new CA in directory; refuse to overwrite an existing one."""
        _check_name(site)
        directory.mkdir(parents=True, exist_ok=True)
        if (directory / "ca.key.pem").exists():
            raise PKIError(f"{directory} already holds a CA; refusing to overwrite it")
        key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, site),
                          x509.NameAttribute(NameOID.COMMON_NAME, f"{site} site CA")])
        now = _now()
        cert = (
            x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=valid_days))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False,
                                         False), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
            .sign(key, hashes.SHA256())
        )
        _write(directory / "ca.pem", cert.public_bytes(serialization.Encoding.PEM))
        _write(directory / "ca.der", cert.public_bytes(serialization.Encoding.DER))
        _write(directory / "ca.key.pem", _key_pem(key), private=True)
        return cls(directory, cert, key)

    @classmethod
    def load(cls, directory: Path) -> SiteCA:
        """Load the CA stored in directory."""
        try:
            cert = x509.load_pem_x509_certificate((directory / "ca.pem").read_bytes())
            key = serialization.load_pem_private_key((directory / "ca.key.pem").read_bytes(), None)
        except FileNotFoundError:
            raise PKIError(f"no CA in {directory}: run `tandem pki init` first") from None
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            raise PKIError("CA key is not an EC key")
        return cls(directory, cert, key)

    def issue(self, name: str, role: Role, hosts: tuple[str, ...] = (),
              valid_days: int = 825, overwrite: bool = False) -> Identity:
        """Issue a certificate for name in role; hosts become extra SANs (DNS or IP)."""
        _check_name(name)
        identity = Identity(name, role, self.directory / role.value / name)
        if identity.key_pem.exists() and not overwrite:
            raise PKIError(f"{role.value} {name!r} already issued in {identity.directory}")
        key = ec.generate_private_key(ec.SECP256R1())
        cert = self._build(name, role, key.public_key(), hosts, valid_days)
        identity.directory.mkdir(parents=True, exist_ok=True)
        _write(identity.cert_pem, cert.public_bytes(serialization.Encoding.PEM))
        _write(identity.key_pem, _key_pem(key), private=True)
        if role is Role.DEVICE:
            _write(identity.cert_der, cert.public_bytes(serialization.Encoding.DER))
            _write(identity.key_der, key.private_bytes(
                serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption()), private=True)
            _write(identity.ca_der, self.cert.public_bytes(serialization.Encoding.DER))
        return identity

    def sign_csr(self, csr_pem: bytes, role: Role, hosts: tuple[str, ...] = (),
                 valid_days: int = 825) -> x509.Certificate:
        """Certify the key of a CSR (e.g. from a TPM) whose private key never came here.

        Only the CSR's proof of possession, public key and CN are used; the
        name, role, usages and SANs are the CA's, as for issue().
        """
        try:
            csr = x509.load_pem_x509_csr(csr_pem)
        except ValueError as exc:
            raise PKIError(f"not a PEM CSR: {exc}") from None
        if not csr.is_signature_valid:
            raise PKIError("CSR signature does not verify (no proof of key possession)")
        key = csr.public_key()
        if not isinstance(key, ec.EllipticCurvePublicKey) or key.curve.name != "secp256r1":
            raise PKIError("CSR key must be EC P-256")
        names = csr.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
        if len(names) != 1:
            raise PKIError("CSR subject must have exactly one CN")
        name = str(names[0].value)
        _check_name(name)
        return self._build(name, role, key, hosts, valid_days)

    def _build(self, name: str, role: Role, public_key: ec.EllipticCurvePublicKey,
               hosts: tuple[str, ...], valid_days: int) -> x509.Certificate:
        site = self.cert.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)[0].value
        subject = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, str(site)),
                             x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, role.value),
                             x509.NameAttribute(NameOID.COMMON_NAME, name)])
        now = _now()
        return (
            x509.CertificateBuilder().subject_name(subject).issuer_name(self.cert.subject)
            .public_key(public_key).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=valid_days))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(True, False, False, False, True, False, False, False,
                                         False), critical=True)
            .add_extension(x509.ExtendedKeyUsage(_USAGES[role]), critical=False)
            .add_extension(x509.SubjectAlternativeName(_sans(name, hosts)), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
                self._key.public_key()), critical=False)
            .sign(self._key, hashes.SHA256())
        )


def _sans(name: str, hosts: tuple[str, ...]) -> list[x509.GeneralName]:
    sans: list[x509.GeneralName] = [x509.DNSName(name)]
    for host in hosts:
        try:
            sans.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            sans.append(x509.DNSName(host))
    return sans


def _check_name(name: str) -> None:
    if not name or len(name) > 64 or not all(c.isalnum() or c in "-_." for c in name) \
            or name.startswith("."):
        raise PKIError(f"name {name!r}: use 1..64 letters, digits, '-', '_' or '.'")


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def _write(path: Path, data: bytes, private: bool = False) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600 if private else 0o644)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)
