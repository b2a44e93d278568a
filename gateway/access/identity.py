"""The device identity proven by a verified client certificate."""

from __future__ import annotations

from cryptography import x509

from tandem.wire.certprofile import ProfileError, Role, certified_name

# Counter names of the refusals, by the profile's reason codes.
_REASONS = {"wrong_role": "not_a_device"}


class IdentityError(Exception):
    """A verified certificate that does not name a device; `reason` is a counter name."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


def device_identity(cert: x509.Certificate) -> str:
    """Return the CN of a certificate issued for the device role (the site profile's OU)."""
    try:
        return certified_name(cert, Role.DEVICE)
    except ProfileError as exc:
        raise IdentityError(_REASONS.get(exc.reason, "cert_rejected"), exc.detail) from None
