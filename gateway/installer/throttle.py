"""Login throttle per client address: a few free attempts, then exponential backoff.

After `free` failures in a row an address must wait 2^(failures-free) s (capped)
before its next attempt is even checked; a success clears it. The table is
bounded (least recently failed address dropped first), so a spray of
addresses cannot grow it.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

MAX_ADDRESSES = 4096


@dataclass(slots=True)
class _Failures:
    count: int
    last: float


class LoginThrottle:
    """Decides whether an address may try a login now."""

    def __init__(self, free: int = 3, max_wait_s: float = 300.0,
                 max_addresses: int = MAX_ADDRESSES,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.free = free
        self.max_wait_s = max_wait_s
        self.max_addresses = max_addresses
        self._clock = clock
        self._table: OrderedDict[str, _Failures] = OrderedDict()
        self.refused = 0

    def wait_s(self, address: str) -> float:
        """Seconds the address must still wait before a login is checked (0: may try now)."""
        failures = self._table.get(address)
        if failures is None or failures.count < self.free:
            return 0.0
        lockout = min(self.max_wait_s, 2.0 ** (failures.count - self.free))
        return max(0.0, failures.last + lockout - self._clock())

    def failed(self, address: str) -> None:
        """Record a failed login."""
        failures = self._table.pop(address, None) or _Failures(0, 0.0)
        failures.count += 1
        failures.last = self._clock()
        self._table[address] = failures
        while len(self._table) > self.max_addresses:
            self._table.popitem(last=False)

    def succeeded(self, address: str) -> None:
        """A successful login clears the address's failures."""
        self._table.pop(address, None)

    def __len__(self) -> int:
        return len(self._table)
