"""Gateway -> cloud uplink batch: the payload inside the COSE_Sign1 envelope.

    {"v": 1, "ep": epoch, "gw": gateway_id, "seq": n, "sent": unix_ms, "recs": [record, ...]}

`seq` numbers batches per gateway from 1 upwards within an epoch `ep`, a
random number the gateway draws when its data directory is new; the cloud
applies each (gw, ep, seq) once, so a retried or replayed batch has no second
effect, and a gateway whose data directory was reset starts a new epoch
instead of reusing numbers the cloud already holds. A batch without `ep`
(a gateway that predates epochs) is epoch 0.
Records are window summaries (`"k": "s"`) or events (`"k": "e"`); version 2
adds sealed records (`"k": "x"`, fields encrypted for the cloud at the edge,
see wire.sealed). A batch holding a sealed record says `"v": 2`, so a cloud
that predates them refuses it cleanly instead of misreading it. Version 3
adds raw snippets (`"k": "r"`, wire.raw), sent only when the cloud asked.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import cbor2

from tandem.wire import strictcbor
from tandem.wire.errors import WireError
from tandem.wire.raw import RawSnippet, decode_raw_record, encode_raw_record

BATCH_VERSION = 1
SEALED_BATCH_VERSION = 2
RAW_BATCH_VERSION = 3  # raw snippets (wire.raw)
MAX_RECORDS = 10_000
MAX_NAME = 64
_UINT63 = (1 << 63) - 1


@dataclass(frozen=True, slots=True)
class Summary:
    """Statistics of one channel of one device over the window [t0_ms, t1_ms)."""

    device: str
    channel: str
    t0_ms: int
    t1_ms: int
    count: int
    minimum: float
    maximum: float
    mean: float
    last: float


@dataclass(frozen=True, slots=True)
class Event:
    """Something the edge decided or noticed (a rule firing, an alarm), with context values."""

    device: str
    name: str
    t_ms: int
    severity: int
    values: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Sealed:
    """The encrypted part of a summary (`of` "s") or event (`of` "e"), readable by the cloud's key.

    `name` is the channel (summary) or event name; `t_ms` the window start or
    event time. kid/epk/wrapped carry the data key (ECDH-ES + A256KW), nonce
    and ciphertext the AES-256-GCM box (wire.sealed).
    """

    device: str
    of: str
    name: str
    t_ms: int
    kid: str
    epk: bytes
    wrapped: bytes
    nonce: bytes
    ciphertext: bytes


Record = Summary | Event | Sealed | RawSnippet


@dataclass(frozen=True, slots=True)
class Batch:
    """A numbered group of records from one gateway."""

    gateway: str
    seq: int
    sent_ms: int
    records: tuple[Record, ...]
    epoch: int = 0  # 0: a gateway that predates epochs (the key is left out)


def encode_batch(batch: Batch) -> bytes:
    """Encode a batch as canonical CBOR (deterministic bytes, so signatures are stable)."""
    sealed = any(isinstance(r, Sealed) for r in batch.records)
    version = SEALED_BATCH_VERSION if sealed else BATCH_VERSION
    if any(isinstance(r, RawSnippet) for r in batch.records):
        version = RAW_BATCH_VERSION
    body: dict[str, Any] = {"v": version, "gw": batch.gateway, "seq": batch.seq,
                            "sent": batch.sent_ms,
                            "recs": [encode_record(r) for r in batch.records]}
    if batch.epoch:
        body["ep"] = batch.epoch
    return cbor2.dumps(body, canonical=True)


def encode_record(record: Record) -> dict[str, Any]:
    """The CBOR map of one record."""
    if isinstance(record, Summary):
        return {"k": "s", "dev": record.device, "ch": record.channel, "t0": record.t0_ms,
                "t1": record.t1_ms, "n": record.count, "min": record.minimum,
                "max": record.maximum, "mean": record.mean, "last": record.last}
    if isinstance(record, Sealed):
        return {"k": "x", "dev": record.device, "of": record.of, "name": record.name,
                "t": record.t_ms, "kid": record.kid, "epk": record.epk, "wk": record.wrapped,
                "iv": record.nonce, "ct": record.ciphertext}
    if isinstance(record, RawSnippet):
        return encode_raw_record(record)
    return {"k": "e", "dev": record.device, "name": record.name, "t": record.t_ms,
            "sev": record.severity, "vals": dict(record.values)}


def decode_batch(data: bytes) -> Batch:
    """Decode and validate a batch payload; raise WireError naming the first fault."""
    obj = strictcbor.loads(data)
    if not isinstance(obj, dict):
        raise WireError("schema", "batch is not a CBOR map")
    version = obj.get("v")
    if version not in (BATCH_VERSION, SEALED_BATCH_VERSION, RAW_BATCH_VERSION):
        raise WireError("schema", f"unsupported batch version {version!r}")
    recs = obj.get("recs")
    if not isinstance(recs, list | tuple) or len(recs) > MAX_RECORDS:
        raise WireError("schema", f"recs must be a list of at most {MAX_RECORDS} records")
    records = tuple(decode_record(r, i) for i, r in enumerate(recs))
    if version == BATCH_VERSION and any(isinstance(r, Sealed) for r in records):
        raise WireError("schema", "sealed records need batch version 2")
    if version != RAW_BATCH_VERSION and any(isinstance(r, RawSnippet) for r in records):
        raise WireError("schema", "raw snippets need batch version 3")
    epoch = _uint(obj, "ep", minimum=1) if "ep" in obj else 0
    return Batch(gateway=_name(obj, "gw"), seq=_uint(obj, "seq", minimum=1),
                 sent_ms=_uint(obj, "sent"), records=records, epoch=epoch)


def decode_record(obj: Any, index: int = 0) -> Record:
    """Decode one record map (index only names the record in errors)."""
    if not isinstance(obj, dict):
        raise WireError("schema", f"record {index} is not a map")
    kind = obj.get("k")
    try:
        if kind == "s":
            return _summary(obj)
        if kind == "e":
            return _event(obj)
        if kind == "x":
            return _sealed(obj)
        if kind == "r":
            return decode_raw_record(obj)
    except WireError as exc:
        raise WireError(exc.reason, f"record {index}: {exc.detail}") from None
    raise WireError("schema", f"record {index}: unknown kind {kind!r}")


def _summary(obj: dict[str, Any]) -> Summary:
    """A summary record; the common, valid shape in one test (the cloud decodes ~50k a second),
    anything else through the field-by-field checks that name the fault."""
    dev, ch, t0, t1, n = obj.get("dev"), obj.get("ch"), obj.get("t0"), obj.get("t1"), obj.get("n")
    low, high, mean, last = obj.get("min"), obj.get("max"), obj.get("mean"), obj.get("last")
    if (type(dev) is str and type(ch) is str and type(t0) is int and type(t1) is int
            and type(n) is int and type(low) is float and type(high) is float
            and type(mean) is float and type(last) is float
            and 0 < len(dev) <= MAX_NAME and 0 < len(ch) <= MAX_NAME
            and dev.isprintable() and ch.isprintable()
            and 0 <= t0 <= t1 <= _UINT63 and 1 <= n <= _UINT63
            and low <= mean <= high  # NaN fails here; finite low and high bound mean
            and math.isfinite(low) and math.isfinite(high) and math.isfinite(last)):
        return Summary(dev, ch, t0, t1, n, low, high, mean, last)
    return _checked_summary(obj)


def _checked_summary(obj: dict[str, Any]) -> Summary:
    summary = Summary(
        device=_name(obj, "dev"), channel=_name(obj, "ch"), t0_ms=_uint(obj, "t0"),
        t1_ms=_uint(obj, "t1"), count=_uint(obj, "n", minimum=1), minimum=_num(obj, "min"),
        maximum=_num(obj, "max"), mean=_num(obj, "mean"), last=_num(obj, "last"),
    )
    if summary.t1_ms < summary.t0_ms:
        raise WireError("schema", "t1 before t0")
    if not summary.minimum <= summary.mean <= summary.maximum:
        raise WireError("schema", "mean outside [min, max]")
    return summary


def _event(obj: dict[str, Any]) -> Event:
    vals = obj.get("vals", {})
    if not isinstance(vals, dict) or len(vals) > 64:
        raise WireError("schema", "vals must be a map of at most 64 entries")
    values = {_name({"k": k}, "k"): _num({"v": v}, "v") for k, v in vals.items()}
    return Event(device=_name(obj, "dev"), name=_name(obj, "name"), t_ms=_uint(obj, "t"),
                 severity=_uint(obj, "sev"), values=values)


SEALED_KINDS = ("s", "e")
MAX_SEALED_BYTES = 4096


def _sealed(obj: dict[str, Any]) -> Sealed:
    of = obj.get("of")
    if of not in SEALED_KINDS:
        raise WireError("schema", f"of must be one of {SEALED_KINDS}")
    sizes = {"epk": (65, 65), "wk": (40, 40), "iv": (12, 12), "ct": (16, MAX_SEALED_BYTES)}
    blobs = {k: _bytes(obj, k, low, high) for k, (low, high) in sizes.items()}
    return Sealed(device=_name(obj, "dev"), of=of, name=_name(obj, "name"),
                  t_ms=_uint(obj, "t"), kid=_name(obj, "kid"), epk=blobs["epk"],
                  wrapped=blobs["wk"], nonce=blobs["iv"], ciphertext=blobs["ct"])


def _bytes(obj: dict[str, Any], key: str, low: int, high: int) -> bytes:
    value = obj.get(key)
    if not isinstance(value, bytes) or not low <= len(value) <= high:
        raise WireError("schema", f"{key} must be a byte string of {low}..{high} bytes")
    return value


def _name(obj: dict[str, Any], key: str) -> str:
    value = obj.get(key)
    if not isinstance(value, str) or not 0 < len(value) <= MAX_NAME or not value.isprintable():
        raise WireError("schema", f"{key} must be printable text of 1..{MAX_NAME} chars")
    return value


def _uint(obj: dict[str, Any], key: str, minimum: int = 0) -> int:
    value = obj.get(key)
    if type(value) is not int or not minimum <= value <= _UINT63:
        raise WireError("schema", f"{key} must be an integer >= {minimum}")
    return value


def _num(obj: dict[str, Any], key: str) -> float:
    value = obj.get(key)
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise WireError("schema", f"{key} must be a finite number")
    return float(value)
