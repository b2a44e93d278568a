# Canonical CBOR (RFC 8949) encoding primitives that write into a caller's
# preallocated buffer and return the new position. Canonical means what cbor2's canonical=True produces, byte for byte: shortest
# integer heads, floats in the shortest of half/single/double that keeps the
# value, map keys sorted by encoded length then bytes.
import struct


def head(buf, pos, major, n):
    # Major type plus argument, shortest form; returns the new position.
    major <<= 5
    if n < 24:
        buf[pos] = major | n
        return pos + 1
    if n < 0x100:
        buf[pos] = major | 24
        buf[pos + 1] = n
        return pos + 2
    if n < 0x10000:
        buf[pos] = major | 25
        struct.pack_into(">H", buf, pos + 1, n)
        return pos + 3
    if n < 0x100000000:
        buf[pos] = major | 26
        struct.pack_into(">I", buf, pos + 1, n)
        return pos + 5
    buf[pos] = major | 27
    struct.pack_into(">Q", buf, pos + 1, n)
    return pos + 9


def put_int(buf, pos, n):
    if n >= 0:
        return head(buf, pos, 0, n)
    return head(buf, pos, 1, -1 - n)


def _half_bits(hi, lo):
    # IEEE single (as two 16-bit halves, which stay small ints on a 32-bit
    # port) to half-precision bits, or -1 when the value would change.
    sign = (hi >> 15) << 15
    exp = (hi >> 7) & 0xFF
    mant = ((hi & 0x7F) << 16) | lo
    if exp == 0:
        return sign if mant == 0 else -1
    if exp == 0xFF:
        return sign | 0x7C00  # infinity (NaN never gets here)
    e = exp - 127
    if -14 <= e <= 15:
        if mant & 0x1FFF:
            return -1
        return sign | ((e + 15) << 10) | (mant >> 13)
    if -24 <= e < -14:
        # Half subnormal: the whole significand shifted right, exactly.
        sig = mant | 0x800000
        shift = -1 - e
        if sig & ((1 << shift) - 1):
            return -1
        return sign | (sig >> shift)
    return -1


def put_float(buf, pos, x):
    if x != x:
        buf[pos:pos + 3] = b"\xf9\x7e\x00"  # the one canonical NaN
        return pos + 3
    struct.pack_into(">f", buf, pos + 1, x)
    if struct.unpack_from(">f", buf, pos + 1)[0] == x:
        hi, lo = struct.unpack_from(">HH", buf, pos + 1)
        h = _half_bits(hi, lo)
        if h >= 0:
            buf[pos] = 0xF9
            struct.pack_into(">H", buf, pos + 1, h)
            return pos + 3
        buf[pos] = 0xFA
        return pos + 5
    buf[pos] = 0xFB
    struct.pack_into(">d", buf, pos + 1, x)
    return pos + 9


def put_text(buf, pos, s):
    b = s.encode()
    pos = head(buf, pos, 3, len(b))
    buf[pos:pos + len(b)] = b
    return pos + len(b)


def put_number(buf, pos, x):
    if isinstance(x, float):
        return put_float(buf, pos, x)
    return put_int(buf, pos, x)


def text_key(s):
    # A text key encoded once, so a map writer can copy it and sort by it.
    b = s.encode()
    out = bytearray(len(b) + 9)
    return bytes(out[:put_text(out, 0, s)])


def canonical_order(encoded_keys):
    # Indexes of keys in canonical (length-first, then bytewise) order.
    return sorted(range(len(encoded_keys)),
                  key=lambda i: (len(encoded_keys[i]), encoded_keys[i]))
