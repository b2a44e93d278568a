"""What the nodes say they had acknowledged, and whether the cloud holds exactly that."""

from __future__ import annotations

import json
import time
from collections import defaultdict
from typing import Any

import httpx
import pytest

from tandem.tools.procs import Child

Point = dict[str, Any]


def events(node: Child, kind: str) -> list[dict[str, Any]]:
    """The node's JSON-line events of one kind ("ack", "dropped", ...)."""
    found = []
    for line in node.lines:
        try:
            event = json.loads(line)
        except ValueError:
            continue
        if isinstance(event, dict) and event.get("ev") == kind:
            found.append(event)
    return found


def summaries(client: httpx.Client, device: str) -> list[Point]:
    """Every summary the cloud holds for device."""
    response = client.get("/api/v1/summaries", params={"device": device, "limit": 10_000})
    response.raise_for_status()
    points: list[Point] = response.json()["points"]
    return points


def wait_for_counts(client: httpx.Client, device: str, expected: int,
                    timeout: float = 90) -> list[Point]:
    """Poll the cloud until every channel of device counts `expected` readings."""
    deadline = time.monotonic() + timeout
    while True:
        points = summaries(client, device)
        counts: dict[str, int] = defaultdict(int)
        for point in points:
            counts[point["channel"]] += point["n"]
        if counts and all(n >= expected for n in counts.values()):
            return points
        if time.monotonic() > deadline:
            raise AssertionError(f"{device}: cloud counts {dict(counts)}, want {expected}")
        time.sleep(0.2)  # polling an HTTP endpoint for a condition, not a fixed wait


def assert_exactly(points: list[Point], acks: list[dict[str, Any]]) -> None:
    """Each acknowledged reading is in exactly one summary, and the statistics match.

    A reading belongs to the narrowest summary covering its time: a late
    reading's own summary [t, t+1) wins over the window around it.
    """
    channels = {ch for ack in acks for ch in ack["values"]}
    assert channels == {p["channel"] for p in points}
    for channel in channels:
        mine = [p for p in points if p["channel"] == channel]
        members: dict[int, list[float]] = {id(p): [] for p in mine}
        readings = [(a["t"], a["values"][channel]) for a in acks if channel in a["values"]]
        for t, value in readings:
            covering = [p for p in mine if p["t0"] <= t < p["t1"]]
            assert covering, f"{channel} reading at {t} is in no summary"
            members[id(min(covering, key=lambda p: p["t1"] - p["t0"]))].append(value)
        assert sum(p["n"] for p in mine) == len(readings), (channel, len(readings))
        for point in mine:
            inside = members[id(point)]
            assert len(inside) == point["n"], point
            assert point["min"] == pytest.approx(min(inside), rel=1e-6)
            assert point["max"] == pytest.approx(max(inside), rel=1e-6)
            assert point["mean"] == pytest.approx(sum(inside) / len(inside), rel=1e-6)
