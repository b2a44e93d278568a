"""Who may start a DTLS handshake, so that half-open peers cannot crowd out devices.

The cookie exchange only proves that a client receives at the address it
claims; on a plant network (or on loopback) one host can claim many. A flood
of cookie-verified ClientHellos used to fill the whole peer table with
handshakes that never finish, and real nodes were refused. The policy here:

- Half-open handshakes have a budget of their own (`max_handshakes`), well
  below the peer table's size, so established sessions always keep room.
- A source IP that completed an authenticated handshake recently is *known*
  (nodes have stable addresses). A known source may start a handshake even
  when the budget is spent: the oldest half-open handshake of an unknown
  source is evicted for it. So a node that reboots during a flood reconnects.
- An unknown source may hold at most `handshakes_per_source` half-open
  handshakes, and unknown sources together may start `new_source_rate` per
  second (a token bucket). Beyond that the ClientHello is dropped before any
  state or key-exchange work is spent; the client retransmits later.
"""

from __future__ import annotations

import time
from collections import Counter, OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from tandem.gateway.access.session import Address


@dataclass(frozen=True, slots=True)
class AdmissionLimits:
    """Bounds on half-open handshakes."""

    max_handshakes: int = 64
    handshakes_per_source: int = 4
    new_source_rate: float = 50.0  # handshakes per second from unknown sources
    new_source_burst: int = 32
    known_sources: int = 4096  # source IPs remembered as known (least recently seen forgotten)
    known_for_s: float = 7 * 86400.0


@dataclass(frozen=True, slots=True)
class Verdict:
    """The answer to a ClientHello that passed the cookie check."""

    refused: str | None = None  # the counter to bump when refused
    evict: Address | None = None  # a half-open handshake to drop first


class HandshakeAdmission:
    """Tracks half-open handshakes and known sources; decides on each new handshake."""

    def __init__(self, limits: AdmissionLimits,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._limits = limits
        self._clock = clock
        self._half_open: OrderedDict[Address, bool] = OrderedDict()  # address -> source known
        self._per_source: Counter[str] = Counter()
        self._known: OrderedDict[str, float] = OrderedDict()  # source IP -> last success
        self._tokens = float(limits.new_source_burst)
        self._refilled = clock()

    @property
    def half_open(self) -> int:
        """How many handshakes are under way."""
        return len(self._half_open)

    def is_known(self, address: Address) -> bool:
        """Whether the address's IP completed an authenticated handshake recently."""
        seen = self._known.get(_source(address))
        return seen is not None and self._clock() - seen <= self._limits.known_for_s

    def decide(self, address: Address) -> Verdict:
        """May a new handshake start from address, and which half-open one must go first?"""
        known = self.is_known(address)
        if len(self._half_open) >= self._limits.max_handshakes:
            victim = self._oldest_unknown() if known else None
            return Verdict(evict=victim) if victim else Verdict(refused="handshake_budget_full")
        if known:
            return Verdict()
        if self._per_source[_source(address)] >= self._limits.handshakes_per_source:
            return Verdict(refused="handshake_source_limit")
        if not self._take_token():
            return Verdict(refused="handshake_rate_limited")
        return Verdict()

    def oldest_unknown(self) -> Address | None:
        """The half-open handshake to evict when the whole peer table is full."""
        return self._oldest_unknown()

    def started(self, address: Address) -> None:
        """A handshake from address is now under way."""
        if address not in self._half_open:
            self._half_open[address] = self.is_known(address)
            self._per_source[_source(address)] += 1

    def ended(self, address: Address, authenticated: bool) -> None:
        """The handshake from address finished (authenticated) or was dropped."""
        if self._half_open.pop(address, None) is not None:
            source = _source(address)
            self._per_source[source] -= 1
            if self._per_source[source] <= 0:
                del self._per_source[source]
        if authenticated:
            self._remember(_source(address))

    def _oldest_unknown(self) -> Address | None:
        for address, known in self._half_open.items():
            if not known:
                return address
        return None

    def _remember(self, source: str) -> None:
        self._known[source] = self._clock()
        self._known.move_to_end(source)
        while len(self._known) > self._limits.known_sources:
            self._known.popitem(last=False)

    def _take_token(self) -> bool:
        now = self._clock()
        self._tokens = min(float(self._limits.new_source_burst),
                           self._tokens + (now - self._refilled) * self._limits.new_source_rate)
        self._refilled = now
        if self._tokens < 1.0:
            return False
        self._tokens -= 1.0
        return True


def _source(address: Address) -> str:
    return str(address[0])
