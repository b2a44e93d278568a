"""Site PKI: one CA per site issuing gateway, device and server certificates.

Layout of a PKI directory (private keys are written 0600 and never committed):

    ca.pem  ca.der  ca.key.pem
    gateway/<name>/cert.pem key.pem
    server/<name>/cert.pem key.pem
    device/<name>/cert.pem key.pem cert.der key.der ca.der   (DER for MicroPython)

The certificate profile itself (role in OU, usages, names, CSR checks) is
tandem.wire.certprofile's, shared with the gateway and the cloud; this module
only keeps the files of a site CA.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from tandem.wire import certprofile
from tandem.wire.certprofile import CertRequest, Issuer, ProfileError, Role

__all__ = ["Identity", "PKIError", "Role", "SiteCA"]


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
        self._issuer = Issuer(cert, key)

    @property
    def cert_pem_path(self) -> Path:
        return self.directory / "ca.pem"

    @classmethod
    def create(cls, directory: Path, site: str,
               valid_days: int = certprofile.CA_VALID_DAYS) -> SiteCA:
        """Create a new CA in directory; refuse to overwrite an existing one."""
        with _as_pki_error():
            certprofile.check_name(site)
        directory.mkdir(parents=True, exist_ok=True)
        if (directory / "ca.key.pem").exists():
            raise PKIError(f"{directory} already holds a CA; refusing to overwrite it")
        issuer = certprofile.new_site_ca(site, valid_days)
        _write(directory / "ca.pem", issuer.cert.public_bytes(serialization.Encoding.PEM))
        _write(directory / "ca.der", issuer.cert.public_bytes(serialization.Encoding.DER))
        _write(directory / "ca.key.pem", _key_pem(issuer.key), private=True)
        return cls(directory, issuer.cert, issuer.key)

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
              valid_days: int = certprofile.DEFAULT_VALID_DAYS,
              overwrite: bool = False) -> Identity:
        """Issue a certificate for name in role; hosts become extra SANs (DNS or IP)."""
        with _as_pki_error():
            certprofile.check_name(name)
        identity = Identity(name, role, self.directory / role.value / name)
        if identity.key_pem.exists() and not overwrite:
            raise PKIError(f"{role.value} {name!r} already issued in {identity.directory}")
        key = ec.generate_private_key(ec.SECP256R1())
        cert = certprofile.issue(self._issuer, CertRequest(name, key.public_key()), role, hosts,
                                 valid_days)
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
                 valid_days: int = certprofile.DEFAULT_VALID_DAYS) -> x509.Certificate:
        """Certify the key of a CSR (e.g. from a TPM) whose private key never came here."""
        with _as_pki_error():
            return certprofile.certify_csr(self._issuer, csr_pem, role, hosts, valid_days)


@contextmanager
def _as_pki_error() -> Iterator[None]:
    # The operator sees one error type from the tools, whatever part of the PKI refused.
    try:
        yield
    except ProfileError as exc:
        raise PKIError(str(exc)) from None


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def _write(path: Path, data: bytes, private: bool = False) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600 if private else 0o644)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.replace(tmp, path)

