# The node's reading report (see wire/report.py, the gateway's codec):
# {1: seq, 2: boot, 3: t_ms, 4: {channel: value}} in canonical CBOR, written
# into a preallocated buffer with channel keys encoded once at start.
import cbor

MAX_BYTES = 1024
MAX_CHANNELS = 32
MAX_NAME = 16


class ReportEncoder:
    def __init__(self, channels):
        if not 0 < len(channels) <= MAX_CHANNELS:
            raise ValueError("1..%d channels" % MAX_CHANNELS)
        for name in channels:
            if not 0 < len(name) <= MAX_NAME:
                raise ValueError("channel name %r: 1..%d chars" % (name, MAX_NAME))
        keys = [cbor.text_key(name) for name in channels]
        self._order = cbor.canonical_order(keys)
        self._keys = [keys[i] for i in self._order]
        # Header (keys 1..4, seq/boot up to 5 bytes, t up to 9), then each
        # key and a value of at most 9 bytes.
        self.max_size = 1 + 6 + 6 + 10 + 2 + sum(len(k) + 9 for k in keys)
        if self.max_size > MAX_BYTES:
            raise ValueError("report could exceed %d bytes" % MAX_BYTES)

    def encode(self, buf, pos, seq, boot, t_ms, values):
        # Writes the report at buf[pos:]; returns its end position. A value of
        # None leaves its channel out (at least one must be present).
        buf[pos] = 0xA4
        buf[pos + 1] = 0x01
        pos = cbor.head(buf, pos + 2, 0, seq)
        buf[pos] = 0x02
        pos = cbor.head(buf, pos + 1, 0, boot)
        buf[pos] = 0x03
        pos = cbor.head(buf, pos + 1, 0, t_ms)
        buf[pos] = 0x04
        present = 0
        for v in values:
            if v is not None:
                present += 1
        pos = cbor.head(buf, pos + 1, 5, present)
        for j in range(len(self._keys)):
            if values[self._order[j]] is None:  # unreadable this time: omitted
                continue
            key = self._keys[j]
            buf[pos:pos + len(key)] = key
            pos = cbor.put_number(buf, pos + len(key), values[self._order[j]])
        return pos
