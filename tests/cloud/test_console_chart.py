"""The console's server-side chart: values and alarms placed on the chosen range, text escaped."""

from __future__ import annotations

import re

from tandem.cloud.console.chart import HEIGHT, MARGIN, WIDTH, Marker, Point, render


def xs(svg: str, element: str) -> list[float]:
    return [float(x) for x in re.findall(rf'<{element} x1="([\d.]+)"', svg)]


def test_alarms_land_at_their_time_on_the_range():
    svg = render([Point(500, 1.0, 2.0, 3.0)], [Marker(0, "a"), Marker(1000, "b")], 0, 1000, "t")
    assert xs(svg, "line") == [MARGIN, WIDTH - MARGIN]
    assert svg.count('class="alarm-marker"') == 2


def test_the_mean_line_spans_the_value_range_top_to_bottom():
    svg = render([Point(0, 0.0, 0.0, 0.0), Point(1000, 10.0, 10.0, 10.0)], [], 0, 1000, "t")
    mean = re.search(r'<polyline points="([^"]+)"', svg)
    assert mean is not None
    assert mean.group(1) == f"{MARGIN:.1f},{HEIGHT - MARGIN:.1f} {WIDTH - MARGIN:.1f},{MARGIN:.1f}"


def test_no_data_still_draws_the_frame_and_names_are_escaped():
    svg = render([], [Marker(5, "<script>")], 0, 10, "dev & <chan>")
    assert "<polyline" not in svg and "<rect" in svg
    assert "<script>" not in svg and "&lt;script&gt;" in svg and "dev &amp; &lt;chan&gt;" in svg
