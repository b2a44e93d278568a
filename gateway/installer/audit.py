"""Changes made on the installer page: logged at INFO and kept, bounded, for the cloud audit log."""

from __future__ import annotations

import logging
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from tandem.wire.clock import now_ms

log = logging.getLogger(__name__)

MAX_PENDING = 1000


@dataclass(frozen=True, slots=True)
class AuditEvent:
    """One change: what, by whom, from where, when, with which details."""

    event: str
    actor: str
    address: str
    at_ms: int
    detail: dict[str, Any] = field(default_factory=dict)


class AuditTrail:
    """Logs each change and queues it for the cloud; a full queue drops the oldest and counts it."""

    def __init__(self, max_pending: int = MAX_PENDING) -> None:
        self.pending: deque[AuditEvent] = deque(maxlen=max_pending)
        self.dropped = 0

    def record(self, event: str, actor: str, address: str, **detail: Any) -> AuditEvent:
        """Log and queue one change."""
        entry = AuditEvent(event, actor, address, now_ms(), detail)
        if len(self.pending) == self.pending.maxlen:
            self.dropped += 1
            log.warning("installer audit queue full: oldest change not sent to the cloud")
        self.pending.append(entry)
        log.info("installer: %s by %s from %s %s", event, actor or "-", address, detail or "")
        return entry
