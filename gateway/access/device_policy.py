"""Which authenticated devices may report, and to which resources.

Three sources combine: the configuration (an allow-list, per-device grants),
the revocation list file (reloaded when it changes) and the signed security
policy from the cloud (allow-list, revocations, grants). A device is refused
if any source revokes it; an allow-list or a grant, when set, must name it.
Changes apply to the next request, also on a DTLS session already open; a
revoked device's next DTLS handshake is refused as well.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping


class DevicePolicy:
    """Decides whether a device proven by its certificate may use a resource."""

    def __init__(self, allowed: Iterable[str] | None = None,
                 revoked: Iterable[str] = (),
                 resources: Mapping[str, Iterable[str]] | None = None) -> None:
        self._allowed = None if allowed is None else frozenset(allowed)
        self._revoked = set(revoked)
        self._resources = _grants(resources)
        self._listed: frozenset[str] = frozenset()  # from the revocation list file
        self._policy = PolicyLayer()

    def revoked(self, device: str) -> bool:
        """True if any source revokes the device (the DTLS handshake is refused then)."""
        return device in self._revoked or device in self._listed \
            or device in self._policy.revoked

    def admits(self, device: str) -> bool:
        """The handshake's verdict: not revoked (allow-lists and grants apply per request)."""
        return not self.revoked(device)

    def permits(self, device: str, path: str = "/r") -> bool:
        """True unless revoked, missing from an allow-list, or not granted path."""
        if self.revoked(device):
            return False
        for allowed in (self._allowed, self._policy.allowed):
            if allowed is not None and device not in allowed:
                return False
        for grants in (self._resources, self._policy.resources):
            if device in grants and path not in grants[device]:
                return False
        return True

    def revoke(self, device: str) -> None:
        """Refuse the device from now on, without a restart (its certificate stays valid)."""
        self._revoked.add(device)

    def set_revocation_list(self, devices: Iterable[str]) -> None:
        """Replace the devices named by the revocation list file."""
        self._listed = frozenset(devices)

    def set_policy(self, allowed: Iterable[str] | None, revoked: Iterable[str],
                   resources: Mapping[str, Iterable[str]]) -> None:
        """Replace what the signed security policy says (one assignment: atomic for readers)."""
        self._policy = PolicyLayer(None if allowed is None else frozenset(allowed),
                                   frozenset(revoked), _grants(resources))


class PolicyLayer:
    """The signed policy's part of the decision."""

    def __init__(self, allowed: frozenset[str] | None = None,
                 revoked: frozenset[str] = frozenset(),
                 resources: dict[str, frozenset[str]] | None = None) -> None:
        self.allowed = allowed
        self.revoked = revoked
        self.resources = resources or {}


def _grants(resources: Mapping[str, Iterable[str]] | None) -> dict[str, frozenset[str]]:
    return {d: frozenset("/" + p.strip("/") for p in paths)
            for d, paths in (resources or {}).items()}


def parse_revocation_list(text: str) -> frozenset[str]:
    """Device names, one a line; blank lines and '#' comments ignored."""
    names = (line.split("#", 1)[0].strip() for line in text.splitlines())
    return frozenset(n for n in names if n)
