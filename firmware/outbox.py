# Bounded RAM ring of encoded reports not yet acknowledged, oldest first.
# One slab allocated at boot; when full the oldest report is dropped, so a
# long outage costs old data, never memory (spill.py can keep it on flash).
from array import array


class Outbox:
    def __init__(self, capacity, slot_size):
        self.buf = bytearray(capacity * slot_size)
        self._slot = slot_size
        self._cap = capacity
        self._len = array("H", [0] * capacity)
        self._seq = array("L", [0] * capacity)
        self._head = 0
        self.count = 0

    def reserve(self):
        # Offset of the slot for the next report, and the seq dropped to make
        # room for it (0 when nothing was dropped).
        dropped = 0
        if self.count == self._cap:
            dropped = self._seq[self._head]
            self.pop()
        return ((self._head + self.count) % self._cap) * self._slot, dropped

    def commit(self, length, seq):
        i = (self._head + self.count) % self._cap
        self._len[i] = length
        self._seq[i] = seq
        self.count += 1

    def head(self):
        # (buffer, offset, length, seq) of the oldest report; count must be > 0.
        return self.buf, self._head * self._slot, self._len[self._head], self._seq[self._head]

    def pop(self):
        self._head = (self._head + 1) % self._cap
        self.count -= 1
