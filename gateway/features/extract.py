"""Sliding-window features per (device, channel): statistics and FFT band energies.

Each series keeps a ring buffer bounded by count (`window_n`) and, when
features are computed, by age (`window_ms` behind its newest sample). Before
a reading enters the ring it may be averaged down (`downsample` readings make
one sample) and dropped by a dead-band (within +-`deadband` of the last kept
sample; `deadband = 0` keeps only changes). The bank holds at most
`max_series` series and evicts the least recently fed one (counted), so memory
stays bounded whatever the number of devices or the input rate.

Features are computed lazily and cached until the next sample, so a report
costs only a ring write unless a rule or the model asks for a feature.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

from tandem.gateway.features.spectrum import Bands, FloatArray, band_energies

STATS = ("mean", "min", "max", "rms", "peak", "crest", "std", "n")
MAX_BANDS = 64


def is_feature_name(name: str) -> bool:
    """True for a statistic (`rms`) or a band (`band3`) name."""
    if name in STATS:
        return True
    return name.startswith("band") and name[4:].isdigit() and int(name[4:]) < MAX_BANDS


@dataclass(frozen=True, slots=True)
class SeriesSettings:
    """How one channel's readings are windowed and filtered."""

    window_n: int = 256
    window_ms: int = 60_000
    bands: Bands = field(default_factory=Bands)
    min_spectrum_samples: int = 16
    deadband: float | None = None
    downsample: int = 1


@dataclass(frozen=True, slots=True)
class FeatureSettings:
    """Defaults for every channel, per-channel overrides, and the bound on series."""

    default: SeriesSettings = field(default_factory=SeriesSettings)
    channels: Mapping[str, SeriesSettings] = field(default_factory=dict)
    max_series: int = 10_000

    def for_channel(self, channel: str) -> SeriesSettings:
        """The settings that apply to `channel`."""
        return self.channels.get(channel, self.default)


class Series:
    """One channel of one device: filters, a ring buffer, cached features."""

    __slots__ = ("_acc_n", "_acc_sum", "_bands", "_count", "_head", "_last_kept", "_stats",
                 "_t", "_v", "kept", "settings", "suppressed")

    def __init__(self, settings: SeriesSettings) -> None:
        self.settings = settings
        self._t = np.zeros(settings.window_n, dtype=np.int64)
        self._v = np.zeros(settings.window_n, dtype=np.float64)
        self._head = 0
        self._count = 0
        self._acc_sum = 0.0
        self._acc_n = 0
        self._last_kept: float | None = None
        self._stats: dict[str, float] | None = None
        self._bands: FloatArray | None = None
        self.kept = 0
        self.suppressed = 0

    def add(self, t_ms: int, value: float) -> bool:
        """Feed one reading; True when it produced a new sample in the window."""
        s = self.settings
        if s.downsample > 1:
            self._acc_sum += value
            self._acc_n += 1
            if self._acc_n < s.downsample:
                return False
            value, self._acc_sum, self._acc_n = self._acc_sum / self._acc_n, 0.0, 0
        if s.deadband is not None and self._last_kept is not None \
                and abs(value - self._last_kept) <= s.deadband:
            self.suppressed += 1
            return False
        self._push(t_ms, value)
        return True

    def window(self) -> tuple[np.ndarray, FloatArray]:
        """(timestamps, values) in the window, oldest first."""
        n, size = self._count, self.settings.window_n
        start = (self._head - n) % size
        if start + n <= size:
            t, v = self._t[start:start + n], self._v[start:start + n]
        else:
            t = np.concatenate((self._t[start:], self._t[:self._head]))
            v = np.concatenate((self._v[start:], self._v[:self._head]))
        if n and t[0] < t[-1] - self.settings.window_ms:
            keep = t >= t[-1] - self.settings.window_ms
            t, v = t[keep], v[keep]
        return t, v

    def feature(self, name: str) -> float | None:
        """A statistic or band energy by name, None when the window cannot give it."""
        if name in STATS:
            stats = self.stats()
            return None if stats is None else stats[name]
        bands = self.bands()
        index = int(name[4:])
        return None if bands is None or index >= len(bands) else float(bands[index])

    def stats(self) -> dict[str, float] | None:
        """All statistics of the window (cached until the next sample)."""
        if self._stats is None and self._count:
            self._stats = _statistics(self.window()[1])
        return self._stats

    def bands(self) -> FloatArray | None:
        """Band energies of the window, None with too few samples or no time span."""
        if self._bands is None and self._count >= self.settings.min_spectrum_samples:
            t, v = self.window()
            span_s = (int(t[-1]) - int(t[0])) / 1000.0
            if len(v) >= max(4, self.settings.min_spectrum_samples) and span_s > 0:
                rate = (len(v) - 1) / span_s
                self._bands = band_energies(v, rate, self.settings.bands)
        return self._bands

    def _push(self, t_ms: int, value: float) -> None:
        size = self.settings.window_n
        self._t[self._head] = t_ms
        self._v[self._head] = value
        self._head = (self._head + 1) % size
        self._count = min(self._count + 1, size)
        self._last_kept = value
        self._stats = None
        self._bands = None
        self.kept += 1


def _statistics(v: FloatArray) -> dict[str, float]:
    mean = float(v.mean())
    rms = math.sqrt(float(v @ v) / len(v))
    peak = float(np.abs(v).max())
    return {"mean": mean, "min": float(v.min()), "max": float(v.max()), "rms": rms,
            "peak": peak, "crest": peak / rms if rms > 0 else 0.0, "std": float(v.std()),
            "n": float(len(v))}


class FeatureBank:
    """Every series the gateway windows, bounded by `max_series` with LRU eviction."""

    def __init__(self, settings: FeatureSettings) -> None:
        self.settings = settings
        self._series: OrderedDict[tuple[str, str], Series] = OrderedDict()
        self.evicted = 0
        self._suppressed_evicted = 0

    def add(self, device: str, channel: str, t_ms: int, value: float) -> Series:
        """Feed one reading to its series (created, possibly evicting the stalest)."""
        key = (device, channel)
        series = self._series.get(key)
        if series is None:
            series = Series(self.settings.for_channel(channel))
            self._series[key] = series
            if len(self._series) > self.settings.max_series:
                _, stale = self._series.popitem(last=False)
                self.evicted += 1
                self._suppressed_evicted += stale.suppressed
        else:
            self._series.move_to_end(key)
        series.add(t_ms, value)
        return series

    def get(self, device: str, channel: str) -> Series | None:
        """The series of (device, channel), if it is being windowed."""
        return self._series.get((device, channel))

    def feature(self, device: str, channel: str, name: str) -> float | None:
        """One feature of one series, None when unknown."""
        series = self._series.get((device, channel))
        return None if series is None else series.feature(name)

    def __len__(self) -> int:
        return len(self._series)

    def snapshot(self) -> dict[str, int]:
        """Counters for the metrics exporter."""
        return {"evicted": self.evicted,
                "suppressed": self._suppressed_evicted
                + sum(s.suppressed for s in self._series.values())}
