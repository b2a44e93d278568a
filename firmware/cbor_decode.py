# CBOR (RFC 8949) decoder for the small messages a gateway may send and for
# logging what the node sent. A separate module from the encoder so a node
# that never decodes does not pay for it in RAM.
import struct

_MAX_DEPTH = 8


def loads(data):
    # Decode one complete item; ValueError on anything malformed or outside
    # the subset used here (no tags, no indefinite lengths, no simple values
    # other than false/true/null).
    obj, pos = _load(memoryview(data), 0, 0)
    if pos != len(data):
        raise ValueError("trailing bytes")
    return obj


def _arg(mv, pos, info):
    if info < 24:
        return info, pos
    size = (1, 2, 4, 8)[info - 24] if info < 28 else 0
    if not size:
        raise ValueError("unsupported length")
    if pos + size > len(mv):
        raise ValueError("truncated")
    n = 0
    for i in range(size):
        n = (n << 8) | mv[pos + i]
    return n, pos + size


def _half(h):
    exp = (h >> 10) & 0x1F
    mant = h & 0x3FF
    if exp == 0:
        val = mant * 2.0 ** -24
    elif exp == 31:
        val = float("nan") if mant else float("inf")
    else:
        val = (1024 + mant) * 2.0 ** (exp - 25)
    return -val if h & 0x8000 else val


def _load(mv, pos, depth):
    if depth > _MAX_DEPTH:
        raise ValueError("too deep")
    if pos >= len(mv):
        raise ValueError("truncated")
    major = mv[pos] >> 5
    info = mv[pos] & 31
    pos += 1
    if major == 7:
        return _simple(mv, pos, info)
    n, pos = _arg(mv, pos, info)
    if major == 0:
        return n, pos
    if major == 1:
        return -1 - n, pos
    if major in (2, 3):
        if n > len(mv) - pos:
            raise ValueError("truncated")
        raw = bytes(mv[pos:pos + n])
        return (raw if major == 2 else str(raw, "utf-8")), pos + n
    if n > len(mv) - pos:  # each item takes at least one byte
        raise ValueError("truncated")
    if major == 4:
        items = []
        for _ in range(n):
            item, pos = _load(mv, pos, depth + 1)
            items.append(item)
        return items, pos
    if major == 5:
        d = {}
        for _ in range(n):
            k, pos = _load(mv, pos, depth + 1)
            if isinstance(k, (list, dict)):
                raise ValueError("unhashable key")
            d[k], pos = _load(mv, pos, depth + 1)
        return d, pos
    raise ValueError("tags unsupported")


def _simple(mv, pos, info):
    if info in (20, 21, 22):
        return (False, True, None)[info - 20], pos
    size = {25: 2, 26: 4, 27: 8}.get(info)
    if size is None:
        raise ValueError("unsupported simple value")
    if pos + size > len(mv):
        raise ValueError("truncated")
    if size == 2:
        return _half((mv[pos] << 8) | mv[pos + 1]), pos + 2
    return struct.unpack(">f" if size == 4 else ">d", bytes(mv[pos:pos + size]))[0], pos + size
