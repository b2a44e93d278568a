"""What the gateway and its actuator process say to each other: typed frames over a socket.

A frame is a 4-byte big-endian length and a CBOR array (cbor2 encodes it; no
hand-written codec). Requests go one way, outcomes the other, matched by
`id`. Pure data and bytes, no I/O: `FrameReader` is fed whatever the socket
gave and yields whole frames, so a frame split across reads, or several in
one read, come out the same. Anything that does not decode is a
`FrameError` naming what was wrong; the reader keeps no state that garbage
could grow (a frame over MAX_FRAME is refused before it is buffered).
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Literal

import cbor2

MAX_FRAME = 4096  # a request or outcome is < 200 bytes; a larger length is garbage
_LENGTH = struct.Struct(">I")

Table = Literal["coil", "register"]
Result = Literal["verified", "mismatch", "error"]


class FrameError(ValueError):
    """Bytes that are not a valid frame (wrong length, not CBOR, wrong shape)."""


@dataclass(frozen=True, slots=True)
class WriteRequest:
    """Write `value` to (unit, table, address) on the controller at host:port, then read it back."""

    id: int
    host: str
    port: int
    timeout_s: float
    unit: int
    table: Table
    address: int
    value: int


@dataclass(frozen=True, slots=True)
class WriteOutcome:
    """How a request went; stamps are the child's CLOCK_MONOTONIC ns (perf_counter_ns on Linux,
    the same clock in every process), 0 where that step was not reached."""

    id: int
    result: Result
    error: str = ""
    acked_ns: int = 0  # the controller acknowledged the write
    done_ns: int = 0  # the read-back answered (matched when result is "verified")


@dataclass(frozen=True, slots=True)
class Ready:
    """The child's first frame: it has connected its targets and takes requests."""

    pid: int


Message = WriteRequest | WriteOutcome | Ready


def encode(message: Message) -> bytes:
    """One frame: length prefix and the message's fields as a CBOR array, tagged by kind."""
    body: list[object]
    if isinstance(message, Ready):
        body = ["r", message.pid]
    elif isinstance(message, WriteRequest):
        body = ["w", message.id, message.host, message.port, message.timeout_s, message.unit,
                message.table, message.address, message.value]
    else:
        body = ["o", message.id, message.result, message.error, message.acked_ns,
                message.done_ns]
    payload = cbor2.dumps(body)
    return _LENGTH.pack(len(payload)) + payload


def decode(payload: bytes) -> Message:
    """A frame's payload (without its length) as a message; FrameError when it is not one."""
    try:
        body = cbor2.loads(payload)
    except Exception as exc:  # noqa: BLE001 - cbor2 raises several types for bad input
        raise FrameError(f"not CBOR: {exc}") from None
    if not isinstance(body, list) or not body:
        raise FrameError(f"not a message array: {body!r:.60}")
    kind, fields = body[0], body[1:]
    if kind == "w":
        return _request(fields)
    if kind == "o":
        return _outcome(fields)
    if kind == "r":
        _check(fields, (int,), "ready")
        pid = fields[0]
        assert isinstance(pid, int)
        return Ready(pid)
    raise FrameError(f"unknown message kind {kind!r:.20}")


def _request(fields: list[object]) -> WriteRequest:
    shape = (int, str, int, (int, float), int, str, int, int)
    _check(fields, shape, "request")
    request = WriteRequest(*fields)  # type: ignore[arg-type]
    if request.table not in ("coil", "register"):
        raise FrameError(f"request {request.id}: unknown table {request.table!r:.20}")
    return request


def _outcome(fields: list[object]) -> WriteOutcome:
    _check(fields, (int, str, str, int, int), "outcome")
    outcome = WriteOutcome(*fields)  # type: ignore[arg-type]
    if outcome.result not in ("verified", "mismatch", "error"):
        raise FrameError(f"outcome {outcome.id}: unknown result {outcome.result!r:.20}")
    return outcome


def _check(fields: list[object], shape: tuple[type | tuple[type, ...], ...], what: str) -> None:
    if len(fields) != len(shape) or not all(isinstance(f, t) and not isinstance(f, bool)
                                            for f, t in zip(fields, shape, strict=True)):
        raise FrameError(f"malformed {what}: {fields!r:.80}")


class FrameReader:
    """Splits a byte stream into frames; raises FrameError on a length that cannot be right."""

    def __init__(self) -> None:
        self._buffer = bytearray()

    def feed(self, data: bytes) -> Iterator[bytes]:
        """Add what the socket gave; yield each whole frame's payload, in order."""
        self._buffer += data
        while len(self._buffer) >= _LENGTH.size:
            (length,) = _LENGTH.unpack_from(self._buffer)
            if length == 0 or length > MAX_FRAME:
                self._buffer.clear()  # the stream is out of step: nothing after it can be trusted
                raise FrameError(f"frame length {length} outside 1..{MAX_FRAME}")
            end = _LENGTH.size + length
            if len(self._buffer) < end:
                return
            payload = bytes(self._buffer[_LENGTH.size:end])
            del self._buffer[:end]
            yield payload
