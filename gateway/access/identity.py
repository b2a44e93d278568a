"""The device identity proven by a verified client certificate."""

from __future__ import annotations

from cryptography import x509
from cryptography.x509.oid import NameOID

DEVICE_ROLE = "device"


class IdentityError(Exception):
    """A verified certificate that does not name a device; `reason` is a counter name."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


def device_identity(cert: x509.Certificate) -> str:
    """Return the CN of a certificate whose OU says device (tools.pki writes the role there)."""
    subject = cert.subject
    ous = subject.get_attributes_for_oid(NameOID.ORGANIZATIONAL_UNIT_NAME)
    roles = [str(a.value) for a in ous]
    if roles != [DEVICE_ROLE]:
        raise IdentityError("not_a_device", f"role {roles!r} in {subject.rfc4514_string()}")
    names = subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    if len(names) != 1 or not str(names[0].value):
        raise IdentityError("cert_rejected", f"no single CN in {subject.rfc4514_string()}")
    return str(names[0].value)
