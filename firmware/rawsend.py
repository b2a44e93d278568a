# Raw vibration snippets (docs/protocol.md section 4): on request or trigger,
# the next window's samples are copied into a buffer allocated at boot and
# POSTed to /raw block-wise (RFC 7959 Block1), one block per exchange.
#   {1: seq, 2: boot, 3: t_ms, 4: rate_hz, 5: g per LSB, 6: "xyz",
#    7: bstr of n frames x, y, z as int16 little-endian}
import cbor
import coap_blocks as coap

PATH = b"raw"
_HEADER_MAX = 40

# What a response means for the transfer.
NEXT = 0
DONE = 1
FAILED = 2


class RawUpload:
    def __init__(self, capacity, szx):
        self.szx = szx
        self.buf = bytearray(_HEADER_MAX + 6 * capacity)
        self.len = 0
        self.num = 0
        self.seq = 0
        self.wanted = False  # capture the next window
        self.pending = False  # a captured snippet is being sent
        self.sent = 0
        self.failed = 0

    def want(self):
        self.wanted = True

    def capture(self, sensors, seq, boot, t_ms, scale):
        # Copies the window just sampled if one is wanted and none is pending.
        if not self.wanted or self.pending:
            return False
        b = self.buf
        n = sensors.n
        b[0] = 0xA7
        b[1] = 0x01
        p = cbor.head(b, 2, 0, seq)
        b[p] = 0x02
        p = cbor.head(b, p + 1, 0, boot)
        b[p] = 0x03
        p = cbor.head(b, p + 1, 0, t_ms)
        b[p] = 0x04
        p = cbor.head(b, p + 1, 0, sensors.rate_hz)
        b[p] = 0x05
        p = cbor.put_float(b, p + 1, scale)
        b[p] = 0x06
        p = cbor.put_text(b, p + 1, "xyz")
        b[p] = 0x07
        p = cbor.head(b, p + 1, 2, 6 * n)
        for axis in (sensors.xs, sensors.ys, sensors.zs):
            q = p
            for i in range(n):
                v = axis[i]
                b[q] = v & 0xFF
                b[q + 1] = (v >> 8) & 0xFF
                q += 6
            p += 2
        self.len = p - 6 + 6 * n
        self.seq = seq
        self.num = 0
        self.wanted = False
        self.pending = True
        return True

    def block(self):
        # (num, more, offset, length) of the block to send next.
        size = 16 << self.szx
        off = self.num * size
        n = min(size, self.len - off)
        return self.num, off + n < self.len, off, n

    def load(self, ex):
        num, more, off, n = self.block()
        coap.load_block(ex, PATH, num, more, self.szx, self.len, self.buf, off, n)

    def on_response(self, code, block1):
        size = 16 << self.szx
        if code == coap.CONTINUE and block1 >= 0 and block1 >> 4 == self.num:
            szx = block1 & 7
            if szx < self.szx:  # the server asks for smaller blocks (RFC 7959 2.9)
                self.num = (self.num + 1) * size // (16 << szx)
                self.szx = szx
            else:
                self.num += 1
            return NEXT if self.num * (16 << self.szx) < self.len else self._fail()
        if code >> 5 == 2 and (self.num + 1) * size >= self.len:
            self.pending = False
            self.sent += 1
            return DONE
        if code == coap.INCOMPLETE and self.num:  # the server lost the start: begin again
            self.num = 0
            return NEXT
        return self._fail()

    def restart(self):
        self.num = 0

    def _fail(self):
        self.pending = False
        self.failed += 1
        return FAILED
