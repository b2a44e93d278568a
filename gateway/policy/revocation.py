"""The local revocation list: a file of device names, reloaded whenever it changes."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

from tandem.gateway.access.device_policy import DevicePolicy, parse_revocation_list
from tandem.gateway.filewatch import FileWatch
from tandem.gateway.supervisor import periodic

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

    async def run(self, stop: asyncio.Event, poll_s: float = 1.0) -> None:
        """Poll the file until stop is set."""
        async def step() -> None:
            self.reload()

        await periodic(stop, poll_s, step)
