"""Merging summaries into coarser windows: counts add, means weigh by count, last is the latest."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tandem.cloud.timeseries.rollup import StoredSummary, merge, rollup
from tandem.wire.batch import Summary


def s(t0: int, n: int, lo: float, mean: float, hi: float, last: float, channel: str = "t",
      device: str = "d") -> Summary:
    return Summary(device, channel, t0, t0 + 10, n, lo, hi, mean, last)


def test_merge_weighs_means_by_count():
    merged = merge([s(0, 1, 0, 0, 0, 0), s(10, 3, 1, 4, 9, 2)], t0_ms=0)
    assert (merged.count, merged.minimum, merged.maximum, merged.mean, merged.last) == (
        4, 0, 9, 3.0, 2)
    assert (merged.t0_ms, merged.t1_ms) == (0, 20)


def test_rollup_groups_by_gateway_device_channel_and_bucket_in_time_order():
    points = [StoredSummary("g1", s(5, 1, 1, 1, 1, 1)), StoredSummary("g1", s(95, 1, 2, 2, 2, 2)),
              StoredSummary("g1", s(105, 1, 3, 3, 3, 3)),
              StoredSummary("g2", s(5, 1, 4, 4, 4, 4)),
              StoredSummary("g1", s(5, 1, 5, 5, 5, 5, channel="u"))]
    merged = rollup(points, 100)
    assert [(p.gateway, p.summary.channel, p.summary.t0_ms, p.summary.count) for p in merged] == [
        ("g1", "t", 0, 2), ("g2", "t", 0, 1), ("g1", "u", 0, 1), ("g1", "t", 100, 1)]


finite = st.floats(min_value=-1e6, max_value=1e6, allow_nan=False)


@st.composite
def summaries(draw: st.DrawFn) -> Summary:
    # + 0.0 turns -0.0 into 0.0: floats(min_value=0.0, max_value=-0.0) is refused.
    lo, hi = sorted((draw(finite) + 0.0, draw(finite) + 0.0))
    mean = draw(st.floats(min_value=lo, max_value=hi))
    return s(draw(st.integers(0, 10_000)), draw(st.integers(1, 1000)), lo, mean, hi,
             draw(finite))


@given(st.lists(summaries(), min_size=1, max_size=30), st.integers(1, 5000))
def test_rollup_keeps_counts_and_bounds(members, window):
    merged = rollup([StoredSummary("g", m) for m in members], window)
    assert sum(p.summary.count for p in merged) == sum(m.count for m in members)
    for p in merged:
        assert p.summary.minimum <= p.summary.mean <= p.summary.maximum
        assert p.summary.t0_ms % window == 0
    assert min(p.summary.minimum for p in merged) == min(m.minimum for m in members)
    assert max(p.summary.maximum for p in merged) == pytest.approx(max(m.maximum for m in members))


def test_merging_extreme_values_gives_a_finite_mean():
    big = 1.7e308
    merged = merge([s(0, 1000, -big, -big, -big, 0), s(10, 1000, big, big, big, 0)], t0_ms=0)
    assert merged.mean == 0.0  # not inf - inf = NaN
