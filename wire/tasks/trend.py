"""Fleet-wide query "devices whose vibration trend rises over 30 days", as map and reduce.

Map runs at each gateway over the windows it holds: per device, the sums a
least-squares line needs (n, sum t, sum v, sum t^2, sum t*v), kept as exact
fractions. Reduce, in the cloud, adds the partial sums of all gateways and
fits the slope. Exact arithmetic makes the sums independent of how windows
are split across gateways and of the order they are added, so the decomposed
answer equals the central one exactly, not within a tolerance.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

from tandem.wire.errors import WireError

DAY_MS = 86_400_000
PERIOD_MS = 30 * DAY_MS
_SUMS = 5  # n, sum t, sum v, sum t^2, sum t*v


@dataclass(frozen=True, slots=True)
class TrendQuery:
    """Which windows count (those in [end - period, end)) and what "rises" means."""

    end_ms: int
    period_ms: int = PERIOD_MS
    min_slope_per_day: float = 0.0  # g RMS per day
    min_windows: int = 3


Window = tuple[str, int, float]  # (device, t_ms, vibration RMS in g)
Partial = dict[str, list[Fraction]]


def map_windows(windows: Iterable[Window], query: TrendQuery) -> Partial:
    """Per device, the exact line-fit sums of its windows inside the query's period."""
    partial: Partial = {}
    start = query.end_ms - query.period_ms
    for device, t_ms, value in windows:
        if not start <= t_ms < query.end_ms:
            continue
        t, v = Fraction(t_ms - start, DAY_MS), Fraction(value)
        sums = partial.setdefault(device, [Fraction(0)] * _SUMS)
        for i, term in enumerate((Fraction(1), t, v, t * t, t * v)):
            sums[i] += term
    return partial


def reduce_partials(partials: Iterable[Partial], query: TrendQuery) -> list[dict[str, Any]]:
    """Devices whose fitted slope exceeds the query's, steepest first, from all partials."""
    total: Partial = {}
    for partial in partials:
        for device, sums in partial.items():
            into = total.setdefault(device, [Fraction(0)] * _SUMS)
            for i, value in enumerate(sums):
                into[i] += value
    rising = []
    for device, (n, st, sv, stt, stv) in total.items():
        denominator = n * stt - st * st
        if n < query.min_windows or denominator == 0:
            continue
        slope = (n * stv - st * sv) / denominator
        if slope > Fraction(query.min_slope_per_day):
            rising.append({"device": device, "slope_per_day": float(slope), "windows": int(n)})
    return sorted(rising, key=lambda row: (-row["slope_per_day"], row["device"]))


def central(windows: Sequence[Window], query: TrendQuery) -> list[dict[str, Any]]:
    """The same query over all windows in one place: the reference the decomposition must equal."""
    return reduce_partials([map_windows(windows, query)], query)


def encode_partial(partial: Partial) -> dict[str, list[list[int]]]:
    """The partial as CBOR/JSON-safe [numerator, denominator] pairs."""
    return {device: [[f.numerator, f.denominator] for f in sums]
            for device, sums in partial.items()}


def decode_partial(obj: Any) -> Partial:
    """The partial of an encoded map; WireError("schema") if it is not one."""
    if not isinstance(obj, dict):
        raise WireError("schema", "trend partial must be a map")
    partial: Partial = {}
    for device, sums in obj.items():
        if not isinstance(device, str) or not isinstance(sums, list) or len(sums) != _SUMS \
                or not all(_is_pair(p) for p in sums):
            raise WireError("schema", f"trend partial of {device!r} must be {_SUMS} pairs")
        partial[device] = [Fraction(p[0], p[1]) for p in sums]
    return partial


def _is_pair(value: Any) -> bool:
    return isinstance(value, list) and len(value) == 2 and all(type(x) is int for x in value) \
        and value[1] > 0
