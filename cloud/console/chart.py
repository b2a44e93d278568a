"""A channel's summaries and a device's alarms as an inline SVG (server-side: no JS, no CDN)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from html import escape

WIDTH, HEIGHT, MARGIN = 800, 240, 40


@dataclass(frozen=True, slots=True)
class Point:
    """One summary window: its middle time and the min / mean / max of the channel."""

    t_ms: int
    minimum: float
    mean: float
    maximum: float


@dataclass(frozen=True, slots=True)
class Marker:
    """An alarm at t_ms, drawn as a red vertical line with its name."""

    t_ms: int
    name: str


def render(points: Sequence[Point], markers: Sequence[Marker], start_ms: int, end_ms: int,
           title: str) -> str:
    """The SVG: a min-max band, the mean line, alarm markers, and the value range as text."""
    lows = [p.minimum for p in points] or [0.0]
    highs = [p.maximum for p in points] or [1.0]
    low, high = min(lows), max(highs)
    high = high if high > low else low + 1.0
    span = max(1, end_ms - start_ms)

    def x(t_ms: int) -> float:
        return MARGIN + (WIDTH - 2 * MARGIN) * (t_ms - start_ms) / span

    def y(value: float) -> float:
        return HEIGHT - MARGIN - (HEIGHT - 2 * MARGIN) * (value - low) / (high - low)

    band = " ".join(f"{x(p.t_ms):.1f},{y(p.maximum):.1f}" for p in points) + " " + " ".join(
        f"{x(p.t_ms):.1f},{y(p.minimum):.1f}" for p in reversed(points))
    mean = " ".join(f"{x(p.t_ms):.1f},{y(p.mean):.1f}" for p in points)
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" class="console-chart" role="img" '
             f'viewBox="0 0 {WIDTH} {HEIGHT}" width="100%"><title>{escape(title)}</title>',
             f'<rect x="{MARGIN}" y="{MARGIN}" width="{WIDTH - 2 * MARGIN}" '
             f'height="{HEIGHT - 2 * MARGIN}" fill="none" stroke="#ccc"/>']
    if points:
        parts.append(f'<polygon points="{band}" fill="#9ecae1" opacity="0.5"/>')
        parts.append(f'<polyline points="{mean}" fill="none" stroke="#08519c" stroke-width="2"/>')
    for m in markers:
        parts.append(f'<g class="alarm-marker"><line x1="{x(m.t_ms):.1f}" x2="{x(m.t_ms):.1f}" '
                     f'y1="{MARGIN}" y2="{HEIGHT - MARGIN}" stroke="#d62728" stroke-width="2"/>'
                     f'<text x="{x(m.t_ms) - 3:.1f}" y="{MARGIN - 4}" fill="#d62728" '
                     f'font-size="12" text-anchor="end">{escape(m.name)}</text></g>')
    parts.append(f'<text x="4" y="{MARGIN}" font-size="11">{high:g}</text>'
                 f'<text x="4" y="{HEIGHT - MARGIN}" font-size="11">{low:g}</text></svg>')
    return "".join(parts)
