"""Node -> gateway reading report: the CBOR body of a CoAP POST to /r.

A report is a CBOR map with small integer keys, so a node spends few bytes:

    {1: seq, 2: boot, 3: t_ms, 4: {channel: value, ...}}

`seq` counts reports since `boot` (a random 32-bit id drawn at boot), so the
pair identifies a report across retransmissions and reboots. `t_ms` is the
node's Unix time in milliseconds, 0 when its clock is not set (the gateway
then stamps arrival time).

Every field is range-checked here, before anything is acknowledged: a value
the rest of the chain cannot store or sum (a time past year 9999, a reading
beyond +-1e15) is refused with a reason, never taken in to fail later.
`check_time` adds the receiver's clock: a timestamp far from it is refused.
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

MAX_T_MS = 253_402_300_799_999  # 9999-12-31T23:59:59.999Z: fits SQLite and a float exactly
MAX_ABS_VALUE = 1e15  # sums of many readings stay finite and exact enough
MAX_AGE_MS = 10 * 365 * 86_400_000  # a reading older than ten years is a clock fault
MAX_AHEAD_MS = 7 * 86_400_000  # nodes may run a week ahead of the gateway's clock

_UINT32 = 0xFFFFFFFF


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
    t_ms = _uint(obj, KEY_TIME, "t", MAX_T_MS)
    return Report(seq=seq, boot=boot, t_ms=t_ms, values=_values(obj.get(KEY_VALUES)))


def check_time(report: Report, now_ms: int) -> None:
    """Refuse a set timestamp outside [now - MAX_AGE_MS, now + MAX_AHEAD_MS] (WireError "time")."""
    if report.t_ms and not now_ms - MAX_AGE_MS <= report.t_ms <= now_ms + MAX_AHEAD_MS:
        raise WireError("time", f"t {report.t_ms} is too far from the gateway's clock {now_ms}")


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
                or abs(value) > MAX_ABS_VALUE or not math.isfinite(value):
            raise WireError("schema", f"channel {name!r} value {value!r} is not a finite number "
                            f"within +-{MAX_ABS_VALUE:g}")
        values[name] = float(value)
    return values
