"""Raw waveform snippets: the node's `POST /raw` body and the uplink record that carries one.

Node body (docs/protocol.md section 4), canonical CBOR with integer keys:

    {1: seq, 2: boot, 3: t_ms, 4: rate_hz, 5: g per LSB, 6: "xyz", 7: int16 LE frames}

Uplink record (section 2, `"k": "r"`, only in batches of version 3):

    {"k": "r", "dev": text, "t": uint, "rate": uint, "g": float, "ax": text,
     "s": bstr, "req": uint (optional: the cloud's raw request this answers)}

Raw snippets leave the gateway only when the cloud asked for one; the cloud
otherwise gets summaries, never waveforms.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from tandem.wire import strictcbor
from tandem.wire.errors import WireError

RAW_PATH = "raw"
MAX_TRANSFER_BYTES = 64 * 1024  # a whole node body, all blocks together
MAX_SAMPLE_BYTES = 60_000  # 10,000 frames of x, y, z
MAX_RATE_HZ = 100_000
AXIS_NAMES = "xyz"
_UINT63 = (1 << 63) - 1


@dataclass(frozen=True, slots=True)
class RawSnippet:
    """One window of raw samples from one device's accelerometer.

    `samples` holds frames of int16 little-endian values, one per axis in
    `axes` order; a value times `scale` is g. `t_ms` is the window start
    (the gateway's arrival time when the node's clock was unset).
    """

    device: str
    t_ms: int
    rate_hz: int
    scale: float
    axes: str
    samples: bytes
    request: int = 0

    @property
    def frames(self) -> int:
        """How many samples per axis."""
        return len(self.samples) // (2 * len(self.axes))

    @property
    def duration_ms(self) -> int:
        """How long the window lasted."""
        return self.frames * 1000 // self.rate_hz


def decode_node_body(data: bytes, device: str, received_ms: int) -> RawSnippet:
    """The snippet in a node's reassembled /raw body; WireError naming the first fault."""
    if len(data) > MAX_TRANSFER_BYTES:
        raise WireError("too_large", f"{len(data)} bytes > {MAX_TRANSFER_BYTES}")
    obj = strictcbor.loads(data)
    if not isinstance(obj, dict) or not all(type(k) is int for k in obj):
        raise WireError("schema", "raw body must be a map with integer keys")
    for key in (1, 2):
        _uint(obj.get(key), f"key {key}")
    t_ms = _uint(obj.get(3), "t (key 3)")
    return _checked(RawSnippet(
        device=device, t_ms=t_ms or received_ms, rate_hz=_uint(obj.get(4), "rate (key 4)"),
        scale=_scale(obj.get(5)), axes=_axes(obj.get(6)), samples=_samples(obj.get(7))))


def encode_raw_record(snippet: RawSnippet) -> dict[str, Any]:
    """The uplink record map of snippet."""
    record: dict[str, Any] = {"k": "r", "dev": snippet.device, "t": snippet.t_ms,
                              "rate": snippet.rate_hz, "g": snippet.scale,
                              "ax": snippet.axes, "s": snippet.samples}
    if snippet.request:
        record["req"] = snippet.request
    return record


def decode_raw_record(obj: dict[str, Any]) -> RawSnippet:
    """The snippet of an uplink record map (its "k" already checked)."""
    device = obj.get("dev")
    if not isinstance(device, str) or not 0 < len(device) <= 64 or not device.isprintable():
        raise WireError("schema", "dev must be printable text of 1..64 chars")
    return _checked(RawSnippet(
        device=device, t_ms=_uint(obj.get("t"), "t"), rate_hz=_uint(obj.get("rate"), "rate"),
        scale=_scale(obj.get("g")), axes=_axes(obj.get("ax")), samples=_samples(obj.get("s")),
        request=_uint(obj.get("req", 0), "req")))


def _checked(snippet: RawSnippet) -> RawSnippet:
    if not 1 <= snippet.rate_hz <= MAX_RATE_HZ:
        raise WireError("schema", f"rate must be 1..{MAX_RATE_HZ} Hz")
    if len(snippet.samples) % (2 * len(snippet.axes)):
        raise WireError("schema", f"samples are not whole frames of {len(snippet.axes)} int16")
    return snippet


def _uint(value: Any, name: str) -> int:
    if type(value) is not int or not 0 <= value <= _UINT63:
        raise WireError("schema", f"{name} must be an unsigned integer")
    return value


def _scale(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) \
            or not math.isfinite(value) or not 0 < value <= 1:
        raise WireError("schema", "g per LSB must be a number in (0, 1]")
    return float(value)


def _axes(value: Any) -> str:
    if not isinstance(value, str) or not 0 < len(value) <= len(AXIS_NAMES) \
            or len(set(value)) != len(value) or set(value) - set(AXIS_NAMES):
        raise WireError("schema", f"axes must be distinct letters of {AXIS_NAMES!r}")
    return value


def _samples(value: Any) -> bytes:
    if not isinstance(value, bytes) or not 0 < len(value) <= MAX_SAMPLE_BYTES:
        raise WireError("schema", f"samples must be 1..{MAX_SAMPLE_BYTES} bytes")
    return value
