"""Certifying enrolled gateways: the cloud signs their CSRs with the CA of `[enrol]`.

Choice: the cloud holds the issuing CA's key itself (`enrol.ca_cert` /
`enrol.ca_key`, which may be passphrase-encrypted). That can be the site CA
(small sites: one CA, no chain to send) or an issuing sub-CA whose
certificate the site CA signed; the certificates it issues are the same
gateway certificates `tandem pki` writes (OU gateway, client+server EKU), so
nothing downstream changes. A sub-CA limits what a stolen cloud key can do,
but needs the chain in every TLS/DTLS hello (the DTLS server flight must fit
one datagram), so the default deployment uses the site CA directly.
"""

from __future__ import annotations

from cryptography import x509

from tandem.cloud.config import CloudConfig
from tandem.cloud.keys.keyfiles import KeyFileError, load_private_key
from tandem.wire.certprofile import Issuer, ProfileError, Role, issue, read_csr


class IssueError(ValueError):
    """A CSR that will not be certified, or a cloud that cannot certify."""


def issuing_ca(config: CloudConfig) -> Issuer:
    """The CA of [enrol], loaded now (IssueError if unconfigured or unreadable)."""
    enrol = config.enrol
    if enrol.ca_cert is None or enrol.ca_key is None:
        raise IssueError("enrolment is not configured: set [enrol] ca_cert and ca_key")
    try:
        cert = x509.load_pem_x509_certificate(enrol.ca_cert.read_bytes())
        key = load_private_key(enrol.ca_key, enrol.ca_passphrase_env, "enrol.ca_key")
    except (OSError, ValueError, KeyFileError) as exc:
        raise IssueError(f"enrolment CA: {exc}") from None
    return Issuer(cert, key)


def certify(config: CloudConfig, csr_pem: bytes, gateway: str) -> x509.Certificate:
    """A gateway certificate for the CSR's key, if the CSR proves possession and names gateway."""
    try:
        request = read_csr(csr_pem)
        if request.name != gateway:
            raise IssueError(f"CSR names {[request.name]!r}; this token enrols {gateway!r}")
        return issue(issuing_ca(config), request, Role.GATEWAY,
                     valid_days=config.enrol.cert_valid_days)
    except ProfileError as exc:
        raise IssueError(str(exc)) from None
