"""InfluxDB 1.x line protocol and InfluxQL quoting for summaries and events (pure, no I/O).

Points:

    summary,channel=<ch>,device=<dev>,gateway=<gw>,span=<t1-t0> \
        n=<n>i,min=,max=,mean=,last=,t1=<ms>i <t0>
    event,device=<dev>,gateway=<gw>,name=<name> severity=<int>i,values="<json>" <t ms>

The tags are the record's key, so a second write of the same key overwrites
the first: replays are idempotent by construction. `span` (window length in
ms, a handful of distinct values) keeps a late reading's one-reading summary
apart from a window that starts at the same millisecond. An event's gateway is a
tag, because the event key is (gateway, device, name, t) as in SQL: one
gateway's event never overwrites another's. (Points written before the gateway
became a tag carry it as a field; they need rewriting, see docs/security-policy.md.)

Tag values: InfluxDB 1.x cannot store a backslash before a comma, space or
equals sign, or at the end of a tag value, so `%` and `\\` are percent-encoded
(`%25`, `%5C`) before the line-protocol escaping, and decoded on read.
InfluxQL filters must compare against `tag_value(name)`.
"""

from __future__ import annotations

import functools
import json
import re

from tandem.wire.batch import Event, Summary

SUMMARY = "summary"
EVENT = "event"
# InfluxDB stores int64 nanoseconds: the latest millisecond timestamp it can hold.
MAX_TIME_MS = (2**63 - 2) // 1_000_000

_TAG_ESCAPES = str.maketrans({"%": "%25", "\\": "%5C", ",": "\\,", "=": "\\=", " ": "\\ "})
_TAG_VALUE_ENCODING = str.maketrans({"%": "%25", "\\": "%5C"})
_DECODE = re.compile(r"%(25|5C)")
_FIELD_STRING_ESCAPES = str.maketrans({"\\": "\\\\", '"': '\\"'})


@functools.lru_cache(maxsize=65_536)
def tag(value: str) -> str:
    """A tag value as written in line protocol (encoded, then escaped); cached: names repeat."""
    return value.translate(_TAG_ESCAPES)


def tag_value(value: str) -> str:
    """The tag value as InfluxDB stores it (encoded, unescaped): what InfluxQL compares with."""
    return value.translate(_TAG_VALUE_ENCODING)


def untag(stored: str) -> str:
    """The original name of a stored tag value."""
    if "%" not in stored:
        return stored
    return _DECODE.sub(lambda m: "%" if m.group(1) == "25" else "\\", stored)


def field_string(value: str) -> str:
    """A quoted, escaped string field value."""
    return '"' + value.translate(_FIELD_STRING_ESCAPES) + '"'


def summary_line(gateway: str, s: Summary) -> str:
    """One summary as a point of measurement `summary`, timestamped t0 (ms)."""
    return (f"{SUMMARY},channel={tag(s.channel)},device={tag(s.device)},gateway={tag(gateway)},"
            f"span={s.t1_ms - s.t0_ms} "
            f"n={s.count}i,min={s.minimum!r},max={s.maximum!r},mean={s.mean!r},"
            f"last={s.last!r},t1={s.t1_ms}i {s.t0_ms}")


def event_line(gateway: str, e: Event) -> str:
    """One event as a point of measurement `event`, timestamped t (ms)."""
    values = json.dumps(e.values, sort_keys=True, allow_nan=False)
    return (f"{EVENT},device={tag(e.device)},gateway={tag(gateway)},name={tag(e.name)} "
            f"severity={e.severity}i,"
            f"values={field_string(values)} {e.t_ms}")


def string_literal(value: str) -> str:
    """An InfluxQL single-quoted string literal."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def identifier(name: str) -> str:
    """An InfluxQL double-quoted identifier (database, retention policy, measurement, key)."""
    return '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'
