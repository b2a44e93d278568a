"""Node -> gateway reading report: the CBOR body of a CoAP POST to /r.

A report is a CBOR map with small integer keys, so a node spends few bytes:

    {1: seq, 2: boot, 3: t_ms, 4: {channel: value, ...}}

`seq` counts reports since `boot` (a random 32-bit id drawn at boot), so the
pair identifies a report across retransmissions and reboots. `t_ms` is the
node's Unix time in milliseconds, 0 when its clock is not set (the gateway
then stamps arrival time).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import cbor2

from tandem.wire import strictcbor
from tandem.wire.errors import WireError

READINGS_PATH = "r"
CONTENT_FORMAT_CBOR = 60
MAX_REPORT_BYTES = 1024
MAX_CHANNELS = 32
MAX_CHANNEL_NAME = 16

KEY_SEQ = 1
KEY_BOOT = 2
KEY_TIME = 3
KEY_VALUES = 4

_UINT32 = 0xFFFFFFFF
_UINT64 = 0xFFFFFFFFFFFFFFFF


@dataclass(frozen=True, slots=True)
class Report:
    """One decoded reading report, before the gateway attaches the device identity."""

    seq: int
    boot: int
    t_ms: int
    values: dict[str, float]


def encode_report(report: Report) -> bytes:
    """Encode a report exactly as the firmware does (canonical CBOR, integer keys)."""
    return cbor2.dumps(
        {KEY_SEQ: report.seq, KEY_BOOT: report.boot, KEY_TIME: report.t_ms,
         KEY_VALUES: dict(report.values)},
        canonical=True,
    )


def decode_report(data: bytes) -> Report:
    """Decode and validate a report; raise WireError naming what is wrong."""
    if len(data) > MAX_REPORT_BYTES:
        raise WireError("too_large", f"{len(data)} bytes > {MAX_REPORT_BYTES}")
    obj = strictcbor.loads(data)
    if not isinstance(obj, dict):
        raise WireError("schema", "report is not a CBOR map")
    unknown = set(obj) - {KEY_SEQ, KEY_BOOT, KEY_TIME, KEY_VALUES}
    if unknown:
        raise WireError("schema", f"unknown keys {sorted(map(repr, unknown))}")
    seq = _uint(obj, KEY_SEQ, "seq", _UINT32)
    boot = _uint(obj, KEY_BOOT, "boot", _UINT32)
    t_ms = _uint(obj, KEY_TIME, "t", _UINT64)
    return Report(seq=seq, boot=boot, t_ms=t_ms, values=_values(obj.get(KEY_VALUES)))


def _uint(obj: dict[Any, Any], key: int, name: str, limit: int) -> int:
    value = obj.get(key)
    if type(value) is not int or not 0 <= value <= limit:
        raise WireError("schema", f"{name} (key {key}) must be an unsigned integer <= {limit}")
    return value


def _values(raw: Any) -> dict[str, float]:
    if not isinstance(raw, dict) or not raw:
        raise WireError("schema", "values (key 4) must be a non-empty map")
    if len(raw) > MAX_CHANNELS:
        raise WireError("schema", f"{len(raw)} channels > {MAX_CHANNELS}")
    values: dict[str, float] = {}
    for name, value in raw.items():
        if not isinstance(name, str) or not 0 < len(name) <= MAX_CHANNEL_NAME:
            raise WireError("schema", f"channel name {name!r} must be text of 1..16 chars")
        if isinstance(value, bool) or not isinstance(value, int | float) \
                or not math.isfinite(value):
            raise WireError("schema", f"channel {name!r} value {value!r} is not a finite number")
        values[name] = float(value)
    return values
