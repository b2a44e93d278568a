"""Stored measurements as plain data, and merging summaries into coarser windows (no I/O)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from tandem.wire.batch import Event, Summary


@dataclass(frozen=True, slots=True)
class StoredSummary:
    """A summary together with the gateway that sent it."""

    gateway: str
    summary: Summary


@dataclass(frozen=True, slots=True)
class StoredEvent:
    """An event together with the gateway that sent it."""

    gateway: str
    event: Event


def rollup(points: Iterable[StoredSummary], window_ms: int) -> list[StoredSummary]:
    """Merge summaries whose t0 falls in the same window_ms bucket, per gateway/device/channel.

    A merged summary starts at its bucket's start and ends at the latest t1 of
    its members; its mean is the count-weighted mean, its last the last value
    of the latest member.
    """
    groups: dict[tuple[str, str, str, int], list[Summary]] = {}
    for p in points:
        s = p.summary
        key = (p.gateway, s.device, s.channel, s.t0_ms - s.t0_ms % window_ms)
        groups.setdefault(key, []).append(s)
    merged = [StoredSummary(gw, merge(members, t0)) for (gw, _, _, t0), members in groups.items()]
    merged.sort(key=lambda p: (p.summary.t0_ms, p.summary.device, p.summary.channel, p.gateway))
    return merged


def merge(members: list[Summary], t0_ms: int) -> Summary:
    """One summary covering all members (all of the same device and channel)."""
    count = sum(m.count for m in members)
    low, high = min(m.minimum for m in members), max(m.maximum for m in members)
    # weights of at most 1: mean * count of extreme values would overflow to inf (and NaN)
    mean = sum(m.mean * (m.count / count) for m in members)
    latest = max(members, key=lambda m: (m.t0_ms, m.t1_ms))
    return Summary(device=latest.device, channel=latest.channel, t0_ms=t0_ms,
                   t1_ms=max(m.t1_ms for m in members), count=count, minimum=low,
                   maximum=high, mean=min(max(mean, low), high),  # rounding may step outside
                   last=latest.last)
