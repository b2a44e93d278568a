"""The local revocation list: a file of device names, reloaded whenever it changes.

The installer page edits it through `revoke` and `allow`: the file is
replaced atomically and re-read at once, so the DTLS server refuses the
device's next handshake and request without waiting for the next poll.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

from tandem.gateway.access.device_policy import DevicePolicy, parse_revocation_list
from tandem.gateway.filewatch import FileWatch
from tandem.gateway.supervisor import periodic
from tandem.wire.certprofile import check_name

log = logging.getLogger(__name__)


class RevocationList:
    """Keeps DevicePolicy's revocation list in step with the file."""

    def __init__(self, path: Path, policy: DevicePolicy) -> None:
        self._watch = FileWatch(path)
        self._policy = policy
        self.reload()

    def reload(self) -> bool:
        """Re-read the file if it changed; a vanished file revokes nobody. True if reloaded."""
        if not self._watch.changed():
            return False
        try:
            names = parse_revocation_list(self._watch.path.read_text())
        except FileNotFoundError:
            names = frozenset()
        except (OSError, UnicodeDecodeError) as exc:
            log.error("revocation list %s unreadable (%s); keeping the previous one",
                      self._watch.path, exc)
            return False
        self._policy.set_revocation_list(names)
        log.info("revocation list %s: %d devices revoked", self._watch.path, len(names))
        return True

    @property
    def path(self) -> Path:
        """The revocation list file."""
        return self._watch.path

    def names(self) -> frozenset[str]:
        """The devices the file revokes now (a missing file revokes nobody)."""
        try:
            return parse_revocation_list(self.path.read_text())
        except FileNotFoundError:
            return frozenset()

    def revoke(self, device: str) -> bool:
        """Add device to the file (ProfileError for a bad name); False if it was listed already."""
        check_name(device)
        if device in self.names():
            return False
        self._rewrite([*self._lines(), device])
        return True

    def allow(self, device: str) -> bool:
        """Take device off the file; False if it was not listed."""
        lines = self._lines()
        kept = [line for line in lines if line.split("#", 1)[0].strip() != device]
        if len(kept) == len(lines):
            return False
        self._rewrite(kept)
        return True

    def _lines(self) -> list[str]:
        try:
            return self.path.read_text().splitlines()
        except FileNotFoundError:
            return []

    def _rewrite(self, lines: list[str]) -> None:
        """Replace the file atomically (FileWatch notices the new inode), then apply it."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(f".{self.path.name}.tmp")
        tmp.write_text("".join(f"{line}\n" for line in lines))
        tmp.replace(self.path)
        self.reload()

    async def run(self, stop: asyncio.Event, poll_s: float = 1.0) -> None:
        """Poll the file until stop is set."""
        async def step() -> None:
            self.reload()

        await periodic(stop, poll_s, step)
