"""Specification of tumbling windows and the de-duplicating ingress."""

from tandem.gateway.pipeline.windows import TumblingWindows


def test_a_window_closes_when_the_next_one_starts() -> None:
    windows = TumblingWindows(window_ms=1000)
    assert windows.add("n1", "temp", 1000, 20.0, now_ms=0) == []
    assert windows.add("n1", "temp", 1500, 22.0, now_ms=0) == []
    assert windows.add("n1", "temp", 1999, 21.0, now_ms=0) == []
    (summary,) = windows.add("n1", "temp", 2000, 30.0, now_ms=0)
    assert (summary.t0_ms, summary.t1_ms, summary.count) == (1000, 2000, 3)
    assert (summary.minimum, summary.maximum, summary.mean, summary.last) == \
        (20.0, 22.0, 21.0, 21.0)


def test_channels_and_devices_have_separate_windows() -> None:
    windows = TumblingWindows(window_ms=1000)
    windows.add("n1", "temp", 1000, 1.0, now_ms=0)
    windows.add("n1", "vib", 1000, 2.0, now_ms=0)
    windows.add("n2", "temp", 1000, 3.0, now_ms=0)
    summaries = sorted(windows.flush(), key=lambda s: (s.device, s.channel))
    assert [(s.device, s.channel, s.mean) for s in summaries] == [
        ("n1", "temp", 1.0), ("n1", "vib", 2.0), ("n2", "temp", 3.0)]


def test_idle_windows_expire_after_one_window_of_gateway_time() -> None:
    windows = TumblingWindows(window_ms=1000)
    windows.add("n1", "temp", 1000, 1.0, now_ms=50_000)
    assert windows.expire(now_ms=50_999) == []
    assert len(windows.expire(now_ms=51_000)) == 1
    assert windows.open_count == 0


def test_a_late_reading_is_kept_as_its_own_summary_under_a_distinct_key() -> None:
    windows = TumblingWindows(window_ms=1000)
    windows.add("n1", "temp", 1000, 1.0, now_ms=0)
    (closed,) = windows.add("n1", "temp", 2000, 2.0, now_ms=0)
    (late,) = windows.add("n1", "temp", 1500, 9.0, now_ms=0)
    assert late.t0_ms == 1500 and late.count == 1 and late.mean == 9.0
    assert late.t0_ms != closed.t0_ms
    assert windows.late == 1


def test_open_windows_are_bounded() -> None:
    windows = TumblingWindows(window_ms=1000, max_open=10)
    closed = []
    for i in range(100):
        closed += windows.add(f"n{i}", "temp", 1000, float(i), now_ms=i)
    assert windows.open_count == 10
    assert len(closed) == 90


def test_a_channel_without_a_filed_window_starts_at_its_first_reading() -> None:
    windows = TumblingWindows(window_ms=1000)
    windows.add("n1", "temp", 1500, 1.0, now_ms=0)
    windows.add("n1", "temp", 1800, 2.0, now_ms=0)
    (first,) = windows.add("n1", "temp", 2100, 3.0, now_ms=0)
    (second,) = windows.flush()
    assert (first.t0_ms, first.t1_ms, first.count) == (1500, 2000, 2)
    assert (second.t0_ms, second.t1_ms, second.count) == (2000, 3000, 1)


def test_a_reset_gateway_never_reuses_the_key_of_a_window_filed_before_the_reset() -> None:
    # Before the reset: the gateway has filed windows for the node and shuts down
    # mid-window, filing the part of [10000, 11000) it saw.
    before = TumblingWindows(window_ms=1000)
    before.add("n1", "temp", 9500, 1.0, now_ms=0)
    before.add("n1", "temp", 10200, 2.0, now_ms=0)
    (filed_at_shutdown,) = before.flush()
    # After the reset (empty data directory): the rest of that window arrives.
    after = TumblingWindows(window_ms=1000)
    after.add("n1", "temp", 10700, 3.0, now_ms=0)
    (rest,) = after.flush()
    assert (filed_at_shutdown.t0_ms, filed_at_shutdown.t1_ms) == (10000, 11000)
    assert (rest.t0_ms, rest.t1_ms, rest.count) == (10700, 11000, 1)


def test_a_gateway_restarted_with_its_data_keeps_aligned_windows() -> None:
    windows = TumblingWindows(window_ms=1000)
    windows.restore_closed({("n1", "temp"): 10000})
    windows.add("n1", "temp", 10200, 2.0, now_ms=0)
    (summary,) = windows.flush()
    assert (summary.t0_ms, summary.t1_ms) == (10000, 11000)
