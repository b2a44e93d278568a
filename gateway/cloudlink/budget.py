"""A daily uplink byte budget for routine data; alarms and events are never held back.

Usage is kept in the gateway database, so a restart does not hand out a
fresh budget, and resets at midnight UTC.
"""

from __future__ import annotations

import time

from tandem.gateway.store.database import GatewayDatabase

_DAY_S = 86_400


class DailyBudget:
    """Bytes of summary and bulk traffic allowed per UTC day (0 = unlimited)."""

    def __init__(self, database: GatewayDatabase, limit_bytes: int) -> None:
        self.limit_bytes = limit_bytes
        self._database = database
        self.day, self.used = database.call_sync(self._load)

    def allows_routine(self, now_s: float | None = None) -> bool:
        """Whether summaries and bulk data may be sent now."""
        self._roll(now_s)
        return self.limit_bytes == 0 or self.used < self.limit_bytes

    async def spend(self, nbytes: int, now_s: float | None = None) -> None:
        """Count bytes of routine traffic sent."""
        self._roll(now_s)
        self.used += nbytes
        await self._database.call(self._store, self.day, self.used)

    def _roll(self, now_s: float | None) -> None:
        day = int((time.time() if now_s is None else now_s) // _DAY_S)
        if day != self.day:
            self.day, self.used = day, 0

    def _load(self) -> tuple[int, int]:
        db = self._database.connection
        rows = dict(db.execute("SELECT key, value FROM meta WHERE key IN "
                               "('budget_day', 'budget_used')").fetchall())
        return int(rows.get("budget_day", 0)), int(rows.get("budget_used", 0))

    def _store(self, day: int, used: int) -> None:
        db = self._database.connection
        with db:
            db.executemany("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)",
                           [("budget_day", day), ("budget_used", used)])
