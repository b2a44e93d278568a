"""Modbus metrics on the gateway's registry, and error logging rate-limited per cause."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

log = logging.getLogger("tandem.gateway.modbus")

LOG_EVERY_S = 60.0
_FAST = (5e-4, 1e-3, 2e-3, 5e-3, 1e-2, 2e-2, 5e-2, 0.1, 0.2, 0.5, 1.0, 2.0)


class ModbusMetrics:
    """Polls by bus/unit/result, latency, backoff state, errors by cause."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        r = registry or CollectorRegistry(auto_describe=True)
        self.polls = Counter("tandem_gw_modbus_polls", "Unit polls by result",
                             ["bus", "unit", "result"], registry=r)
        self.latency = Histogram("tandem_gw_modbus_poll_seconds",
                                 "One unit poll (all its requests)", ["bus"], buckets=_FAST,
                                 registry=r)
        self.backoff = Gauge("tandem_gw_modbus_unit_backoff_seconds",
                             "Current backoff of a unit (0: polled on schedule)",
                             ["bus", "unit"], registry=r)
        self.errors = Counter("tandem_gw_modbus_errors",
                              "Failed requests by cause (timeout, exception_02, io, ...)",
                              ["bus", "unit", "cause"], registry=r)
        self.writes = Counter("tandem_gw_modbus_writes", "Verified writes by result",
                              ["bus", "unit", "result"], registry=r)


class RateLimitedLog:
    """Logs the first error of each cause at once, then at most once per interval with a count."""

    def __init__(self, every_s: float = LOG_EVERY_S,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.every_s = every_s
        self.clock = clock
        self._last: dict[tuple[str, ...], float] = {}
        self._suppressed: dict[tuple[str, ...], int] = {}

    def error(self, key: tuple[str, ...], message: str) -> bool:
        """Log `message` unless `key` was logged within the interval; True when logged."""
        now = self.clock()
        last = self._last.get(key)
        if last is not None and now - last < self.every_s:
            self._suppressed[key] = self._suppressed.get(key, 0) + 1
            return False
        more = self._suppressed.pop(key, 0)
        self._last[key] = now
        log.warning("%s%s", message, f" (and {more} more since)" if more else "")
        return True
