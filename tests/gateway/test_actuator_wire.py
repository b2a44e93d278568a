"""Specification of the frames between the gateway and its actuator process (pure bytes)."""

from __future__ import annotations

import struct

import cbor2
import pytest

from tandem.gateway.modbus.actuatorwire import (
    MAX_FRAME,
    FrameError,
    FrameReader,
    Ready,
    WriteOutcome,
    WriteRequest,
    decode,
    encode,
)

REQUEST = WriteRequest(7, "127.0.0.1", 5020, 0.5, 1, "coil", 3, 1)
OUTCOME = WriteOutcome(7, "verified", "", 1_000, 2_000)


def test_each_message_survives_encoding_even_split_byte_by_byte() -> None:
    stream = encode(REQUEST) + encode(OUTCOME) + encode(Ready(42))
    reader = FrameReader()
    payloads = [p for i in range(len(stream)) for p in reader.feed(stream[i:i + 1])]
    assert [decode(p) for p in payloads] == [REQUEST, OUTCOME, Ready(42)]


def test_several_frames_in_one_read_come_out_in_order() -> None:
    frames = b"".join(encode(WriteOutcome(i, "error", f"no. {i}")) for i in range(5))
    assert [decode(p).id for p in FrameReader().feed(frames)] == [0, 1, 2, 3, 4]  # type: ignore[union-attr]


@pytest.mark.parametrize("payload, reason", [
    (b"\xff\xfe", "not CBOR"),
    (cbor2.dumps({"id": 1}), "not a message array"),
    (cbor2.dumps(["x", 1]), "unknown message kind"),
    (cbor2.dumps(["w", 1, "h", 502]), "malformed request"),
    (cbor2.dumps(["w", 1, "h", 502, 0.5, 1, "input", 0, 1]), "unknown table"),
    (cbor2.dumps(["w", True, "h", 502, 0.5, 1, "coil", 0, 1]), "malformed request"),
    (cbor2.dumps(["o", 1, "maybe", "", 0, 0]), "unknown result"),
])
def test_a_payload_that_is_not_a_message_is_a_frame_error_saying_why(payload: bytes,
                                                                     reason: str) -> None:
    with pytest.raises(FrameError, match=reason):
        decode(payload)


@pytest.mark.parametrize("length", [0, MAX_FRAME + 1, 0xFFFFFFFF])
def test_a_length_out_of_range_is_refused_before_anything_is_buffered(length: int) -> None:
    reader = FrameReader()
    with pytest.raises(FrameError, match="frame length"):
        list(reader.feed(struct.pack(">I", length) + b"junk"))
    # the reader starts clean again: the next good frame is read
    assert [decode(p) for p in reader.feed(encode(REQUEST))] == [REQUEST]
