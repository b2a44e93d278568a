# Capped exponential backoff with jitter, so a fleet that lost its gateway
# does not reconnect in lockstep.
import os


class Backoff:
    def __init__(self, min_ms, max_ms):
        self._min = min_ms
        self._max = max_ms
        self._next = min_ms

    def reset(self):
        self._next = self._min

    def next_ms(self):
        # Current delay with +-25 % jitter, then double it for next time.
        base = self._next
        self._next = min(base * 2, self._max)
        jitter = os.urandom(1)[0] - 128  # -128..127
        return base + base * jitter // 512
