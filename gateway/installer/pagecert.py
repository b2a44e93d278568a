"""The installer page's TLS certificate: the gateway's own, else a bootstrap one (by fingerprint).

A gateway whose certificate is issued serves the page with it ([identity]
cert, else the enrolled <data_dir>/enrolment/cert.pem, with [identity] key;
an encrypted file key is opened with the key-store passphrase).
A gateway that has none yet, or whose key cannot be read as a file (not
enrolled, key in the TPM only), serves it with a bootstrap certificate made
once at first start and kept in <data_dir>/installer/: issued by a throwaway
CA whose key is never stored, so it proves nothing by itself. Its SHA-256
fingerprint is logged at WARNING; the installer compares it with the one the
browser shows before typing a password (docs/installer.md). Once the gateway
enrols, `upgrade` switches the live page to the enrolled certificate.
"""

from __future__ import annotations

import logging
import os
import socket
import ssl
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from tandem.gateway.config import IdentitySection
from tandem.gateway.identity import enrolled
from tandem.gateway.identity.keystore import KeyStoreError, passphrase_from
from tandem.wire.certprofile import (
    CertRequest,
    ProfileError,
    Role,
    check_name,
    issue,
    new_site_ca,
)

log = logging.getLogger(__name__)

BOOTSTRAP_DIR = "installer"
CERT_FILE, KEY_FILE = "bootstrap-cert.pem", "bootstrap-key.pem"


@dataclass(frozen=True)
class PageCert:
    """The TLS context the page serves with, and what to tell about its certificate."""

    tls: ssl.SSLContext
    bootstrap: bool
    fingerprint: str  # SHA-256 of the certificate, colon-separated hex


def page_cert(identity: IdentitySection, data_dir: Path, name: str) -> PageCert:
    """The gateway's certificate if it loads, else the bootstrap one (made if missing)."""
    tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    found = _gateway_cert(identity, data_dir)
    if isinstance(found, Path):
        _load(tls, found, identity)
        return PageCert(tls, False, fingerprint(found.read_bytes()))
    cert, key = bootstrap_files(data_dir / BOOTSTRAP_DIR, name)
    tls.load_cert_chain(cert, key)
    shown = fingerprint(cert.read_bytes())
    log.warning("installer page: no usable gateway certificate (%s); serving a self-signed "
                "bootstrap certificate, SHA-256 fingerprint %s: check that the browser "
                "shows this fingerprint before logging in", found, shown)
    return PageCert(tls, True, shown)


def upgrade(current: PageCert, identity: IdentitySection, data_dir: Path) -> PageCert:
    """After enrolment: serve the enrolled certificate from now on, if its key is a file."""
    if not current.bootstrap:
        return current
    found = _gateway_cert(identity, data_dir)
    if not isinstance(found, Path):
        return current
    _load(current.tls, found, identity)  # the live context: new connections get it
    log.info("installer page: now served with %s", found)
    return PageCert(current.tls, False, fingerprint(found.read_bytes()))


def _gateway_cert(identity: IdentitySection, data_dir: Path) -> Path | str:
    """The first certificate that loads with identity.key (configured, then enrolled), or why
    none does. Each is tried on a scratch context, so a failure leaves the live one intact."""
    problems = []
    for cert in (identity.cert, enrolled.enrolment_dir(data_dir) / "cert.pem"):
        try:
            _load(ssl.create_default_context(ssl.Purpose.CLIENT_AUTH), cert, identity)
        except (OSError, ssl.SSLError) as exc:
            problems.append(f"{cert.name}: {exc}")
            continue
        return cert
    return "; ".join(problems)


def _load(tls: ssl.SSLContext, cert: Path, identity: IdentitySection) -> None:
    """Load cert with identity.key, opened with the key-store passphrase if it is encrypted."""
    try:
        password = passphrase_from(identity.passphrase_env, identity.passphrase_file)
    except KeyStoreError:
        password = None
    tls.load_cert_chain(cert, identity.key, password=lambda: password or b"")


def bootstrap_files(directory: Path, name: str) -> tuple[Path, Path]:
    """The bootstrap certificate and key files, made once (key 0600)."""
    cert, key = directory / CERT_FILE, directory / KEY_FILE
    if cert.exists() and key.exists():
        return cert, key
    directory.mkdir(parents=True, exist_ok=True)
    private = ec.generate_private_key(ec.SECP256R1())
    try:
        check_name(name)
    except ProfileError:
        name = "tandem-gateway"  # an id that cannot be a CN still gets a page
    issuer = new_site_ca("installer-bootstrap")  # its key is dropped: it signs nothing else
    hosts = tuple(h for h in ("localhost", "127.0.0.1", socket.gethostname()) if h.isascii())
    leaf = issue(issuer, CertRequest(name, private.public_key()), Role.SERVER, hosts)
    _write(key, private.private_bytes(serialization.Encoding.PEM,
                                      serialization.PrivateFormat.PKCS8,
                                      serialization.NoEncryption()), 0o600)
    _write(cert, leaf.public_bytes(serialization.Encoding.PEM), 0o644)
    return cert, key


def fingerprint(cert_pem: bytes) -> str:
    """SHA-256 of the first certificate in the PEM, as browsers show it (AB:CD:...)."""
    cert = x509.load_pem_x509_certificate(cert_pem)
    return cert.fingerprint(hashes.SHA256()).hex(":").upper()


def _write(path: Path, data: bytes, mode: int) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    tmp.replace(path)
