"""Pure helpers over DTLS 1.2 record framing (RFC 6347 section 4.1)."""

from __future__ import annotations

from collections.abc import Iterator

RECORD_HEADER = 13
_HANDSHAKE_HEADER = 12
_CONTENT_HANDSHAKE = 22
_CLIENT_HELLO = 1
_DTLS_VERSIONS = (b"\xfe\xff", b"\xfe\xfd")
_RANDOM_OFFSET = RECORD_HEADER + _HANDSHAKE_HEADER + 2
_RANDOM_LEN = 32


def split_records(data: bytes) -> Iterator[bytes]:
    """Yield whole records from a byte stream; a truncated tail is yielded as is."""
    offset = 0
    while offset < len(data):
        if len(data) - offset < RECORD_HEADER:
            yield data[offset:]
            return
        length = int.from_bytes(data[offset + 11:offset + 13], "big")
        end = offset + RECORD_HEADER + length
        yield data[offset:end]
        offset = end


def pack_datagrams(data: bytes, max_size: int) -> list[bytes]:
    """Group records into datagrams of at most max_size (a lone larger record is sent alone)."""
    datagrams: list[bytes] = []
    current = b""
    for record in split_records(data):
        if current and len(current) + len(record) > max_size:
            datagrams.append(current)
            current = b""
        current += record
    if current:
        datagrams.append(current)
    return datagrams


def looks_like_dtls(datagram: bytes) -> bool:
    """True if the datagram starts with a plausible DTLS record header."""
    return (len(datagram) >= RECORD_HEADER and 20 <= datagram[0] <= 25
            and datagram[1:3] in _DTLS_VERSIONS)


def is_client_hello(datagram: bytes) -> bool:
    """True if the datagram starts with an epoch-0 handshake record holding a ClientHello."""
    return (looks_like_dtls(datagram) and datagram[0] == _CONTENT_HANDSHAKE
            and datagram[3:5] == b"\x00\x00"
            and len(datagram) > RECORD_HEADER and datagram[RECORD_HEADER] == _CLIENT_HELLO)


def client_hello_random(datagram: bytes) -> bytes | None:
    """The 32-byte client random of a ClientHello, which stays the same across its cookie retry."""
    end = _RANDOM_OFFSET + _RANDOM_LEN
    if not is_client_hello(datagram) or len(datagram) < end:
        return None
    return datagram[_RANDOM_OFFSET:end]
