"""Batch spectral analysis of a node's recent raw snippets (task kind "spectral").

Per snippet and axis: RMS in g, the dominant frequency and its share of the
power (numpy FFT of the mean-removed, Hann-windowed samples); then the
figures over the batch, so a trend in the dominant peak shows at a glance.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from tandem.wire.raw import RawSnippet


def analyse_snippet(snippet: RawSnippet) -> dict[str, Any]:
    """RMS (g), dominant frequency (Hz) and its power share, per axis of one snippet."""
    frames = np.frombuffer(snippet.samples, dtype="<i2").reshape(-1, len(snippet.axes))
    axes: dict[str, Any] = {}
    for column, axis in enumerate(snippet.axes):
        values = frames[:, column].astype(np.float64) * snippet.scale
        axes[axis] = _axis_figures(values, snippet.rate_hz)
    return {"t": snippet.t_ms, "rate": snippet.rate_hz, "axes": axes}


def analyse_batch(snippets: Sequence[RawSnippet]) -> dict[str, Any]:
    """Per-snippet figures in time order, and the mean RMS and peak range per axis."""
    rows = [analyse_snippet(s) for s in sorted(snippets, key=lambda s: s.t_ms)]
    summary: dict[str, Any] = {}
    for axis in sorted({a for row in rows for a in row["axes"]}):
        figures = [row["axes"][axis] for row in rows if axis in row["axes"]]
        peaks = [f["peak_hz"] for f in figures]
        summary[axis] = {"rms_mean": sum(f["rms"] for f in figures) / len(figures),
                         "peak_min_hz": min(peaks), "peak_max_hz": max(peaks)}
    return {"snippets": rows, "summary": summary}


def _axis_figures(values: np.ndarray, rate_hz: int) -> dict[str, float]:
    centred = values - values.mean()
    rms = float(np.sqrt(np.mean(centred ** 2)))
    if len(values) < 4:
        return {"rms": rms, "peak_hz": 0.0, "peak_share": 0.0}
    spectrum = np.abs(np.fft.rfft(centred * np.hanning(len(values)))) ** 2
    spectrum[0] = 0.0  # the mean is removed; leakage into DC is no peak
    total = float(spectrum.sum())
    peak = int(np.argmax(spectrum))
    return {"rms": rms, "peak_hz": peak * rate_hz / len(values),
            "peak_share": float(spectrum[peak]) / total if total > 0 else 0.0}
