"""The latest-values board: newest value per channel and a cursor saying what changed since."""

from __future__ import annotations

from tandem.gateway.pipeline.livevalues import LiveValues
from tandem.gateway.reports import DeviceReport
from tandem.wire.live import LiveValue
from tandem.wire.report import Report


def take(board: LiveValues, device: str, seq: int, t_ms: int, values: dict[str, float]) -> None:
    board.take(DeviceReport(device, Report(seq, 1, t_ms, values), 0))


def test_changed_since_gives_each_channel_updated_after_the_cursor_with_its_reading_time() -> None:
    board = LiveValues()
    take(board, "n1", 1, 1_000, {"temp": 20.0, "rpm": 900.0})
    mark = board.cursor
    assert board.changed_since("n1", 0) == {"temp": LiveValue(20.0, 1_000),
                                            "rpm": LiveValue(900.0, 1_000)}
    assert board.changed_since("n1", mark) == {}
    take(board, "n1", 2, 2_000, {"temp": 21.0})
    take(board, "n2", 1, 2_500, {"temp": 5.0})
    assert board.changed_since("n1", mark) == {"temp": LiveValue(21.0, 2_000)}
    assert board.changed_since("n2", mark) == {"temp": LiveValue(5.0, 2_500)}
    assert board.changed_since("unknown", 0) == {}


def test_a_report_without_node_time_is_stamped_with_its_arrival() -> None:
    board = LiveValues()
    board.take(DeviceReport("n1", Report(1, 1, 0, {"temp": 1.0}), 7_000))
    assert board.changed_since("n1", 0) == {"temp": LiveValue(1.0, 7_000)}
