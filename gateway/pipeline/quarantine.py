"""Quarantine: records the pipeline cannot process are kept aside, counted and shown.

A report that passed the wire checks can still be unusable: a journal row
written by an older release, a Modbus reading that decoded to NaN, or a bug
this code has not met yet. Such a record must never stop the others, nor
crash the pipeline again on every replay, nor vanish: it moves to the
`quarantine` table (listed by `tandem-gateway quarantine list`), the metric
`tandem_gw_quarantined_records_total{reason}` counts it and a WARNING names
the device and the reason.
"""

from __future__ import annotations

import logging
import sqlite3
from dataclasses import dataclass

import cbor2
from prometheus_client import Counter

from tandem.gateway.reports import DeviceReport
from tandem.wire.clock import now_ms
from tandem.wire.report import MAX_ABS_VALUE, MAX_CHANNELS, MAX_T_MS

log = logging.getLogger(__name__)

MAX_DETAIL = 200
_UINT32 = 0xFFFFFFFF
# What storing or summing a record can raise for its content (not for the disk).
DATA_ERRORS = (ArithmeticError, ValueError, TypeError, cbor2.CBOREncodeError,
               sqlite3.InterfaceError)


@dataclass(frozen=True, slots=True)
class Fault:
    """Why a record was quarantined: a stable reason code and a human detail."""

    reason: str
    detail: str


@dataclass(frozen=True, slots=True)
class QuarantinedRecord:
    """One row of the quarantine table, as the CLI lists it."""

    id: int
    device: str
    reason: str
    detail: str
    received_ms: int
    quarantined_ms: int
    record: object


def record_fault(item: DeviceReport) -> Fault | None:
    """The first field of a report the pipeline could not store or sum, None if all fit."""
    r = item.report
    for name, value in (("seq", r.seq), ("boot", r.boot)):
        if not 0 <= value <= _UINT32:
            return Fault("range_" + name, f"{name} {value} outside 0..{_UINT32}")
    for name, value in (("t", r.t_ms), ("received", item.received_ms)):
        if not 0 <= value <= MAX_T_MS:
            return Fault("range_time", f"{name} {value} outside 0..{MAX_T_MS}")
    if not 0 < len(r.values) <= MAX_CHANNELS:
        return Fault("range_channels", f"{len(r.values)} channels")
    for channel, reading in r.values.items():
        if not isinstance(reading, int | float) or not abs(reading) <= MAX_ABS_VALUE:
            return Fault("range_value", f"{channel} = {reading!r}")
    return None


def fault_of(exc: BaseException) -> Fault:
    """A Fault for an exception raised while processing a record."""
    return Fault("error_" + type(exc).__name__, str(exc)[:MAX_DETAIL])


def insert(db: sqlite3.Connection, item: DeviceReport, fault: Fault) -> None:
    """Keep a record in the quarantine table (inside the caller's transaction)."""
    r = item.report
    # Text and floats as repr: the record is kept whatever its content (huge ints, NaN).
    record = {"boot": repr(r.boot), "seq": repr(r.seq), "t": repr(r.t_ms),
              "vals": {str(k): repr(v) for k, v in r.values.items()}}
    db.execute("INSERT INTO quarantine (device, reason, detail, received_ms, quarantined_ms, "
               "record) VALUES (?, ?, ?, ?, ?, ?)",
               (item.device, fault.reason, fault.detail[:MAX_DETAIL],
                _clamp_ms(item.received_ms), now_ms(), cbor2.dumps(record)))


def list_records(db: sqlite3.Connection, limit: int = 100) -> list[QuarantinedRecord]:
    """The newest quarantined records, newest first."""
    rows = db.execute("SELECT id, device, reason, detail, received_ms, quarantined_ms, record "
                      "FROM quarantine ORDER BY id DESC LIMIT ?", (limit,)).fetchall()
    return [QuarantinedRecord(id=int(r[0]), device=str(r[1]), reason=str(r[2]), detail=str(r[3]),
                              received_ms=int(r[4]), quarantined_ms=int(r[5]),
                              record=cbor2.loads(r[6])) for r in rows]


class QuarantineLog:
    """Counts and logs quarantined records (after their transaction committed)."""

    def __init__(self, counter: Counter) -> None:
        self._counter = counter

    def __call__(self, item: DeviceReport, fault: Fault) -> None:
        self._counter.labels(reason=fault.reason).inc()
        log.warning("quarantined a report of device %s (boot %s, seq %s): %s: %s",
                    item.device, item.report.boot, item.report.seq, fault.reason, fault.detail)


def _clamp_ms(value: int) -> int:
    return value if 0 <= value <= MAX_T_MS else 0

