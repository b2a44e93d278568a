"""CBOR decoding that refuses trailing bytes (cbor2.loads silently ignores them)."""

from __future__ import annotations

import io
from typing import Any

import cbor2

from tandem.wire.errors import WireError

_DECODE_ERRORS = (cbor2.CBORDecodeError, ValueError, TypeError, OverflowError, RecursionError,
                  MemoryError, LookupError)


def loads(data: bytes) -> Any:
    """Decode exactly one CBOR item that fills data; raise WireError('cbor') otherwise."""
    stream = io.BytesIO(data)
    try:
        item = cbor2.CBORDecoder(stream).decode()
    except _DECODE_ERRORS as exc:
        raise WireError("cbor", str(exc) or type(exc).__name__) from None
    if stream.tell() != len(data):
        raise WireError("cbor", f"{len(data) - stream.tell()} bytes after the CBOR item")
    return item
