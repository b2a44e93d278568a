# Optional spill of the outbox to a flash file during a long outage: when the
# RAM ring is full its oldest report is appended here instead of dropped. The
# file is a FIFO of records [len u16][seq u32][report], bounded in bytes; it
# holds older reports than the ring, so it is drained first, and deleted once
# empty. It is started afresh at boot, so a report is never sent twice.
import os
import struct

from outbox import Outbox

_HEAD = 6


class Spill:
    def __init__(self, path, max_bytes, slot_size):
        self.path = path
        self._max = max_bytes
        self.buf = bytearray(slot_size)  # the record at the read position
        self._hdr = bytearray(_HEAD)
        self._read = 0
        self._end = 0
        self._cached = False
        self.count = 0
        self.full = 0  # reports refused because the file was at its bound
        self.discarded = self._remove()

    def _remove(self):
        try:
            os.remove(self.path)
            return True
        except OSError:  # no file: nothing left from before
            return False

    def put(self, buf, off, n, seq):
        # False when the file is at its bound (the caller drops the report).
        if self._end + _HEAD + n > self._max:
            self.full += 1
            return False
        struct.pack_into("<HI", self._hdr, 0, n, seq)
        with open(self.path, "ab") as f:
            f.write(self._hdr)
            f.write(memoryview(buf)[off:off + n])
        self._end += _HEAD + n
        self.count += 1
        return True

    def head(self):
        # (offset, length, seq) of the oldest record, read into self.buf.
        with open(self.path, "rb") as f:
            f.seek(self._read)
            f.readinto(self._hdr)
            n, seq = struct.unpack_from("<HI", self._hdr, 0)
            f.readinto(memoryview(self.buf)[:n])
        self._cached = True
        return 0, n, seq

    def pop(self):
        n = struct.unpack_from("<H", self._hdr, 0)[0] if self._cached else self._skip()
        self._cached = False
        self._read += _HEAD + n
        self.count -= 1
        if not self.count:
            self._remove()
            self._read = self._end = 0

    def _skip(self):
        self.head()
        return struct.unpack_from("<H", self._hdr, 0)[0]


class SpillingOutbox(Outbox):
    # The RAM ring with a Spill behind it; count includes spilled reports.
    def __init__(self, capacity, slot_size, spill):
        super().__init__(capacity, slot_size)
        self.spill = spill
        self.spilled = 0
        self._ram = 0  # reports in the ring

    def reserve(self):
        if self._ram == self._cap:
            h = self._head
            if self.spill.put(self.buf, h * self._slot, self._len[h], self._seq[h]):
                self.spilled += 1
                self._head = (h + 1) % self._cap
                self._ram -= 1
                return ((self._head + self._ram) % self._cap) * self._slot, 0
            self._ram -= 1
            self.count -= 1
            dropped = self._seq[h]
            self._head = (h + 1) % self._cap
            return ((self._head + self._ram) % self._cap) * self._slot, dropped
        return ((self._head + self._ram) % self._cap) * self._slot, 0

    def commit(self, length, seq):
        i = (self._head + self._ram) % self._cap
        self._len[i] = length
        self._seq[i] = seq
        self._ram += 1
        self.count += 1

    def head(self):
        if self.spill.count:
            off, n, seq = self.spill.head()
            return self.spill.buf, off, n, seq
        return super().head()

    def pop(self):
        if self.spill.count:
            self.spill.pop()
        else:
            self._head = (self._head + 1) % self._cap
            self._ram -= 1
        self.count -= 1
