# CoAP (RFC 7252) message building and parsing for the node's one request:
# a confirmable POST to /r with a CBOR body (GET /c and the block-wise POST
# /raw are built by coap_blocks.py). Pure byte work, no I/O, so the same
# functions are tested against aiocoap on the host.
from micropython import const

VERSION = const(1)
CON = const(0)
NON = const(1)
ACK = const(2)
RST = const(3)

POST = const(0x02)
EMPTY = const(0x00)
CHANGED = const(0x44)  # 2.04
BAD_REQUEST = const(0x80)  # 4.00
FORBIDDEN = const(0x83)  # 4.03
TOO_LARGE = const(0x8D)  # 4.13
UNAVAILABLE = const(0xA3)  # 5.03

_OPT_URI_PATH = const(11)
_OPT_CONTENT_FORMAT = const(12)
CF_CBOR = const(60)
TOKEN_LEN = const(4)
# Header, token, Uri-Path "r", Content-Format 60, payload marker.
REQUEST_OVERHEAD = const(4 + TOKEN_LEN + 2 + 2 + 1)


def code_text(code):
    return "%d.%02d" % (code >> 5, code & 31)


def build_post_r(buf, mid, token, payload, off, n):
    # Write CON POST /r (Content-Format CBOR) into buf; returns its length.
    buf[0] = (VERSION << 6) | (CON << 4) | TOKEN_LEN
    buf[1] = POST
    buf[2] = mid >> 8
    buf[3] = mid & 0xFF
    buf[4:4 + TOKEN_LEN] = token
    p = 4 + TOKEN_LEN
    buf[p] = (_OPT_URI_PATH << 4) | 1
    buf[p + 1] = 0x72  # "r"
    buf[p + 2] = ((_OPT_CONTENT_FORMAT - _OPT_URI_PATH) << 4) | 1
    buf[p + 3] = CF_CBOR
    buf[p + 4] = 0xFF
    p += 5
    buf[p:p + n] = memoryview(payload)[off:off + n]
    return p + n


def restamp(buf, mid, token):
    # New message ID and token on a request built by build_post_r.
    buf[2] = mid >> 8
    buf[3] = mid & 0xFF
    buf[4:4 + TOKEN_LEN] = token


def build_empty(buf, mtype, mid):
    # Empty ACK or RST (4 bytes) answering a message from the gateway.
    buf[0] = (VERSION << 6) | (mtype << 4)
    buf[1] = EMPTY
    buf[2] = mid >> 8
    buf[3] = mid & 0xFF
    return 4


def parse(msg):
    # Returns (type, code, mid, token, payload_offset); payload_offset is
    # len(msg) when there is no payload. Raises ValueError on anything that
    # is not a well-formed CoAP message.
    n = len(msg)
    if n < 4:
        raise ValueError("short")
    b0 = msg[0]
    if b0 >> 6 != VERSION:
        raise ValueError("version")
    tkl = b0 & 0x0F
    if tkl > 8 or 4 + tkl > n:
        raise ValueError("token")
    code = msg[1]
    if code == EMPTY and (tkl or n > 4):
        raise ValueError("empty message with content")
    p = _skip_options(msg, 4 + tkl, n)
    return (b0 >> 4) & 3, code, (msg[2] << 8) | msg[3], bytes(msg[4:4 + tkl]), p


def _skip_options(msg, p, n):
    # Validates option framing; the node needs no option values back.
    while p < n:
        b = msg[p]
        if b == 0xFF:
            if p + 1 == n:
                raise ValueError("payload marker without payload")
            return p + 1
        p += 1
        p = _ext(msg, p, n, b >> 4)[1]
        length, p = _ext(msg, p, n, b & 0x0F)
        p += length
        if p > n:
            raise ValueError("option overruns message")
    return n


def _ext(msg, p, n, nib):
    if nib < 13:
        return nib, p
    if nib == 13:
        if p >= n:
            raise ValueError("truncated option")
        return msg[p] + 13, p + 1
    if nib == 14:
        if p + 1 >= n:
            raise ValueError("truncated option")
        return ((msg[p] << 8) | msg[p + 1]) + 269, p + 2
    raise ValueError("reserved option nibble")
