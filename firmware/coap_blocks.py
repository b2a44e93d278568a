# CoAP requests beyond the report: GET with a query (command polls) and a
# block-wise POST (RFC 7959 Block1, raw snippets). Apart from coap.py so a
# node without side jobs does not load them.
from micropython import const

from coap import CF_CBOR, CON, POST, TOKEN_LEN, VERSION, _ext

GET = const(0x01)
CONTENT = const(0x45)  # 2.05
CONTINUE = const(0x5F)  # 2.31
INCOMPLETE = const(0x88)  # 4.08
OPT_BLOCK1 = const(27)
_OPT_URI_PATH = const(11)
_OPT_CONTENT_FORMAT = const(12)
_OPT_URI_QUERY = const(15)
_OPT_SIZE1 = const(60)


def _header(buf, code, mid, token):
    buf[0] = (VERSION << 6) | (CON << 4) | TOKEN_LEN
    buf[1] = code
    buf[2] = mid >> 8
    buf[3] = mid & 0xFF
    buf[4:4 + TOKEN_LEN] = token
    return 4 + TOKEN_LEN


def _option(buf, p, delta, n, value):
    # One option: delta from the previous number, then a value of n bytes
    # (bytes-like), or n = 0..4 with value an int written big-endian.
    d = delta if delta < 13 else 13
    buf[p] = (d << 4) | n
    p += 1
    if d == 13:
        buf[p] = delta - 13
        p += 1
    if isinstance(value, int):
        for i in range(n - 1, -1, -1):
            buf[p + i] = value & 0xFF
            value >>= 8
    else:
        buf[p:p + n] = value
    return p + n


def _uint_len(v):
    return 0 if v == 0 else 1 if v < 0x100 else 2 if v < 0x10000 else 3 if v < 0x1000000 else 4


def build_get(buf, mid, token, path, query):
    # CON GET /path?query (path and query bytes, query may be empty).
    p = _header(buf, GET, mid, token)
    p = _option(buf, p, _OPT_URI_PATH, len(path), path)
    if query:
        p = _option(buf, p, _OPT_URI_QUERY - _OPT_URI_PATH, len(query), query)
    return p


def block_value(num, more, szx):
    return (num << 4) | (8 if more else 0) | szx


def build_post_block(buf, mid, token, path, num, more, szx, size1, payload, off, n):
    # CON POST /path, Content-Format CBOR, Block1 (num, more, szx) and, on the
    # first block, Size1 (the whole body's size), then payload[off:off+n].
    p = _header(buf, POST, mid, token)
    p = _option(buf, p, _OPT_URI_PATH, len(path), path)
    p = _option(buf, p, _OPT_CONTENT_FORMAT - _OPT_URI_PATH, 1, CF_CBOR)
    v = block_value(num, more, szx)
    p = _option(buf, p, OPT_BLOCK1 - _OPT_CONTENT_FORMAT, _uint_len(v), v)
    if num == 0:
        p = _option(buf, p, _OPT_SIZE1 - OPT_BLOCK1, _uint_len(size1), size1)
    buf[p] = 0xFF
    p += 1
    buf[p:p + n] = memoryview(payload)[off:off + n]
    return p + n


def option_uint(msg, num):
    # Value of uint option num (e.g. Block1) in a message coap.parse()
    # accepted, or -1 when absent.
    p = 4 + (msg[0] & 0x0F)
    n = len(msg)
    opt = 0
    while p < n and msg[p] != 0xFF:
        b = msg[p]
        delta, p = _ext(msg, p + 1, n, b >> 4)
        length, p = _ext(msg, p, n, b & 0x0F)
        opt += delta
        if opt == num:
            v = 0
            for i in range(min(length, 4)):
                v = (v << 8) | msg[p + i]
            return v
        p += length
    return -1


def load_get(ex, path, query):
    # Loads the exchange with CON GET /path?query (a command poll).
    ex.kind = 1  # exchange.COMMAND
    ex.loaded = True
    ex.tx_len = build_get(ex.tx, 0, ex.token, path, query)
    ex.renew()


def load_block(ex, path, num, more, szx, size1, body, off, n):
    # Loads the exchange with one Block1 block of POST /path.
    ex.kind = 2  # exchange.RAW
    ex.loaded = True
    ex.tx_len = build_post_block(ex.tx, 0, ex.token, path, num, more, szx, size1, body, off, n)
    ex.renew()
