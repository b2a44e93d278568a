"""The live lane's messages: newest values of watched devices, gateway -> cloud (docs/protocol.md).

Both travel as signed gateway requests (wire/gwrequest.py):

    op "live-values"  body {"values": {device: {channel: [t_ms, value], ...}, ...}}
    op "live-watch"   body {}   (asks which devices the cloud watches)

and the cloud answers either with the watched set as JSON
`{"watch": [{"device": text, "until": unix_ms}, ...], "interval_ms": n}`.

Live values are not the record: a value may be skipped (only the newest per
channel travels) or lost with a failed post; summaries remain what is filed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from tandem.wire.errors import WireError

VALUES_OP = "live-values"
WATCH_OP = "live-watch"
MAX_NAME = 64  # device and channel names, as in the registry


@dataclass(frozen=True, slots=True)
class LiveValue:
    """One channel's newest value and the time of its reading (unix ms)."""

    value: float
    t_ms: int


@dataclass(frozen=True, slots=True)
class Watch:
    """The cloud watches device until until_ms."""

    device: str
    until_ms: int


LiveUpdate = dict[str, dict[str, LiveValue]]  # device -> channel -> newest value


def update_to_plain(update: LiveUpdate) -> dict[str, Any]:
    """The request body of a live-values post."""
    return {"values": {device: {name: [v.t_ms, v.value] for name, v in channels.items()}
                       for device, channels in update.items()}}


def update_from_plain(body: dict[str, Any], max_devices: int, max_channels: int) -> LiveUpdate:
    """Validate a live-values body; WireError("schema") naming the first fault."""
    values = body.get("values")
    if not isinstance(values, dict) or set(body) != {"values"}:
        raise WireError("schema", 'live values need exactly {"values": {device: {...}}}')
    if len(values) > max_devices:
        raise WireError("schema", f"{len(values)} devices in one post (at most {max_devices})")
    return {_name(device, "device"): _channels(device, channels, max_channels)
            for device, channels in values.items()}


def _channels(device: str, channels: Any, max_channels: int) -> dict[str, LiveValue]:
    if not isinstance(channels, dict) or not 0 < len(channels) <= max_channels:
        raise WireError("schema", f"{device}: 1..{max_channels} channels as a map")
    return {_name(name, "channel"): _value(device, name, pair) for name, pair in channels.items()}


def _value(device: str, name: str, pair: Any) -> LiveValue:
    if not isinstance(pair, list) or len(pair) != 2 or type(pair[0]) is not int \
            or not 0 <= pair[0] < 1 << 63 or type(pair[1]) not in (int, float) \
            or not math.isfinite(pair[1]):
        raise WireError("schema", f"{device}/{name}: needs [t_ms, finite number]")
    return LiveValue(float(pair[1]), pair[0])


def _name(name: Any, what: str) -> str:
    if not isinstance(name, str) or not 0 < len(name) <= MAX_NAME or not name.isprintable():
        raise WireError("schema", f"{what} names are 1..{MAX_NAME} printable chars")
    return name


def watches_to_plain(watches: list[Watch], interval_ms: int) -> dict[str, Any]:
    """The cloud's answer: which devices are watched, and how often to post."""
    return {"watch": [{"device": w.device, "until": w.until_ms} for w in watches],
            "interval_ms": interval_ms}


def watches_from_plain(answer: Any) -> list[Watch]:
    """The watched set from the cloud's answer; WireError("schema") if it is not one."""
    listed = answer.get("watch") if isinstance(answer, dict) else None
    if not isinstance(listed, list):
        raise WireError("schema", 'the answer needs {"watch": [...]}')
    watches = []
    for item in listed:
        if not isinstance(item, dict) or type(item.get("until")) is not int:
            raise WireError("schema", "each watch needs a device and an until time")
        watches.append(Watch(_name(item.get("device"), "device"), item["until"]))
    return watches
