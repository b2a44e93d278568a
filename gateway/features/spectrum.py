"""Band energies of a sampled signal (numpy FFT), scaled so they add up to its variance.

The mean is removed and a Hann window applied; each bin's power is scaled by
the window's energy, so a sine of amplitude A puts about A^2/2 into the band
holding its frequency and white noise of variance s^2 spreads s^2 over all
bands (Parseval). Bands are either `count` equal slices of 0..Nyquist (so a
model trained on them does not depend on the sample rate) or explicit
[low, high) edges in Hz.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]


@dataclass(frozen=True, slots=True)
class Bands:
    """Either `count` equal bands over 0..Nyquist, or explicit `edges_hz` pairs."""

    count: int = 16
    edges_hz: tuple[tuple[float, float], ...] = ()

    @property
    def size(self) -> int:
        """How many energies a spectrum of these bands has."""
        return len(self.edges_hz) if self.edges_hz else self.count


def band_energies(values: FloatArray, sample_rate_hz: float, bands: Bands) -> FloatArray:
    """Energy per band of `values` sampled at `sample_rate_hz` (needs >= 4 samples)."""
    n = len(values)
    window = _hann(n)
    spectrum = np.fft.rfft((values - values.mean()) * window)
    power = spectrum.real ** 2 + spectrum.imag ** 2
    power *= 2.0 / (n * float(window @ window))
    power[0] /= 2.0
    if n % 2 == 0:
        power[-1] /= 2.0
    index = _equal_band_index(n, bands.count) if not bands.edges_hz \
        else _edge_band_index(n, sample_rate_hz, bands.edges_hz)
    keep = index >= 0
    energies: FloatArray = np.bincount(index[keep], weights=power[keep],
                                       minlength=bands.size).astype(np.float64, copy=False)
    return energies


@lru_cache(maxsize=64)
def _hann(n: int) -> FloatArray:
    window: FloatArray = np.hanning(n + 1)[:n]  # periodic Hann: flat spectral weighting
    window.setflags(write=False)
    return window


@lru_cache(maxsize=64)
def _equal_band_index(n: int, count: int) -> npt.NDArray[np.intp]:
    bins = n // 2 + 1
    fraction = np.arange(bins) / max(bins - 1, 1)
    index: npt.NDArray[np.intp] = np.minimum((fraction * count).astype(np.intp), count - 1)
    index.setflags(write=False)
    return index


def _edge_band_index(n: int, sample_rate_hz: float,
                     edges: tuple[tuple[float, float], ...]) -> npt.NDArray[np.intp]:
    freqs = np.fft.rfftfreq(n, 1.0 / sample_rate_hz)
    index = np.full(len(freqs), -1, dtype=np.intp)
    for band, (low, high) in enumerate(edges):
        index[(freqs >= low) & (freqs < high) & (index < 0)] = band
    return index
