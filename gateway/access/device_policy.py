"""Which authenticated devices may report: an optional allow-list and a revocation set."""

from __future__ import annotations

from collections.abc import Iterable


class DevicePolicy:
    """Decides whether a device proven by its certificate may submit reports."""

    def __init__(self, allowed: Iterable[str] | None = None,
                 revoked: Iterable[str] = ()) -> None:
        self._allowed = None if allowed is None else frozenset(allowed)
        self._revoked = set(revoked)

    def permits(self, device: str) -> bool:
        """True unless the device is revoked or missing from a configured allow-list."""
        if device in self._revoked:
            return False
        return self._allowed is None or device in self._allowed

    def revoke(self, device: str) -> None:
        """Refuse the device from now on, without a restart (its certificate stays valid)."""
        self._revoked.add(device)
