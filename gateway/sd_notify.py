"""systemd's notify protocol: READY=1, WATCHDOG=1, STOPPING=1 as datagrams to NOTIFY_SOCKET.

The protocol is one datagram of text per state change to the unix socket
systemd names in NOTIFY_SOCKET (a leading "@" is the abstract namespace).
Without NOTIFY_SOCKET (not under systemd) every call is a no-op.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Mapping

log = logging.getLogger(__name__)


class SystemdNotifier:
    """Sends state strings to systemd; never raises (a lost notification is logged)."""

    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        env = os.environ if environ is None else environ
        path = env.get("NOTIFY_SOCKET", "")
        self._address = "\0" + path[1:] if path.startswith("@") else path
        usec = env.get("WATCHDOG_USEC", "")
        # systemd's advice: ping at half the watchdog timeout.
        self.watchdog_interval_s = int(usec) / 2e6 if usec.isdigit() and int(usec) else 0.0

    @property
    def enabled(self) -> bool:
        """True when running under a systemd that listens for notifications."""
        return bool(self._address)

    def notify(self, state: str) -> bool:
        """Send one state ("READY=1", ...); True if it was sent."""
        if not self._address:
            return False
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
                sock.sendto(state.encode(), self._address)
        except OSError as exc:
            log.warning("sd_notify %s to %s failed: %s", state, self._address, exc)
            return False
        return True
