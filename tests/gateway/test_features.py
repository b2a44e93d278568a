"""Specification of window features: statistics and band energies on known signals, bounds."""

import math

import numpy as np
import pytest

from tandem.gateway.features.extract import FeatureBank, FeatureSettings, Series, SeriesSettings
from tandem.gateway.features.spectrum import Bands, band_energies

RATE_HZ = 1000.0


def _feed(series: Series, values: np.ndarray, t0_ms: int = 0) -> None:
    for i, value in enumerate(values):
        series.add(t0_ms + i, float(value))  # 1 ms apart: 1 kHz


def _sine(amplitude: float, freq_hz: float, n: int = 256) -> np.ndarray:
    t = np.arange(n) / RATE_HZ
    return amplitude * np.sin(2 * np.pi * freq_hz * t)


def test_sine_rms_is_amplitude_over_root_two_and_crest_is_root_two() -> None:
    series = Series(SeriesSettings(window_n=1000))
    _feed(series, _sine(3.0, 50.0, n=1000))  # 50 whole periods
    stats = series.stats()
    assert stats is not None
    assert stats["rms"] == pytest.approx(3.0 / math.sqrt(2), rel=1e-6)
    assert stats["crest"] == pytest.approx(math.sqrt(2), rel=1e-3)
    assert stats["peak"] == pytest.approx(3.0, rel=1e-3)
    assert stats["mean"] == pytest.approx(0.0, abs=1e-9)
    assert (stats["min"], stats["max"], stats["n"]) == pytest.approx((-3.0, 3.0, 1000), rel=1e-3)


def test_band_energy_lands_in_the_band_of_the_tone() -> None:
    bands = Bands(edges_hz=((0, 25), (25, 75), (75, 200), (200, 500)))
    series = Series(SeriesSettings(window_n=256, bands=bands))
    _feed(series, _sine(2.0, 50.0) + 0.5)  # the offset (DC) is removed first
    energies = series.bands()
    assert energies is not None
    assert energies[1] == pytest.approx(2.0 ** 2 / 2, rel=0.01)  # A^2/2 in 25..75 Hz
    assert energies[[0, 2, 3]].sum() < 0.01 * energies[1]
    assert series.feature("band1") == pytest.approx(float(energies[1]))


def test_equal_bands_split_zero_to_nyquist_and_add_up_to_the_variance() -> None:
    noise = np.random.default_rng(1).normal(0.0, 1.5, 4096)
    energies = band_energies(noise, RATE_HZ, Bands(count=16))
    assert len(energies) == 16
    assert energies.sum() == pytest.approx(noise.var(), rel=0.05)
    tone = band_energies(_sine(1.0, 100.0, 512), RATE_HZ, Bands(count=16))
    assert int(np.argmax(tone)) == 3  # 100 Hz in the fourth 31.25 Hz band


def test_the_window_is_bounded_by_count_and_by_age() -> None:
    series = Series(SeriesSettings(window_n=4, window_ms=1000))
    for t, value in enumerate([1.0, 2.0, 3.0, 4.0, 5.0, 6.0]):
        series.add(t, value)
    assert list(series.window()[1]) == [3.0, 4.0, 5.0, 6.0]
    series.add(10_000, 7.0)  # the older samples are past window_ms
    assert list(series.window()[1]) == [7.0]
    assert series.feature("mean") == 7.0


def test_dead_band_drops_small_changes_and_on_change_drops_repeats() -> None:
    series = Series(SeriesSettings(deadband=0.5))
    for t, value in enumerate([20.0, 20.2, 20.4, 20.6, 20.7, 19.9]):
        series.add(t, value)
    assert list(series.window()[1]) == [20.0, 20.6, 19.9]
    assert series.suppressed == 3
    on_change = Series(SeriesSettings(deadband=0.0))
    for t, value in enumerate([1.0, 1.0, 1.0, 2.0, 2.0]):
        on_change.add(t, value)
    assert list(on_change.window()[1]) == [1.0, 2.0]


def test_downsampling_averages_groups_of_readings() -> None:
    series = Series(SeriesSettings(downsample=3))
    kept = [series.add(t, float(v)) for t, v in enumerate([1, 2, 3, 10, 20, 30, 7])]
    assert kept == [False, False, True, False, False, True, False]
    assert list(series.window()[1]) == [2.0, 20.0]


def test_too_few_samples_give_no_spectrum() -> None:
    series = Series(SeriesSettings(min_spectrum_samples=16))
    _feed(series, _sine(1.0, 10.0, n=15))
    assert series.bands() is None and series.feature("band0") is None
    assert series.feature("rms") is not None


def test_the_bank_is_bounded_whatever_the_number_of_series_and_evicts_the_stalest() -> None:
    bank = FeatureBank(FeatureSettings(default=SeriesSettings(window_n=8), max_series=100))
    for device in range(1000):
        bank.add(f"n{device}", "temp", 0, 1.0)
        bank.add("n-hot", "temp", device, 2.0)  # fed all the time: never the stalest
    assert len(bank) == 100
    assert bank.evicted == 901
    assert bank.get("n0", "temp") is None
    assert bank.feature("n-hot", "temp", "n") == 8.0
    assert bank.snapshot()["evicted"] == 901


def test_per_channel_settings_override_the_defaults() -> None:
    settings = FeatureSettings(channels={"temp": SeriesSettings(window_n=4)})
    bank = FeatureBank(settings)
    assert bank.add("n1", "temp", 0, 1.0).settings.window_n == 4
    assert bank.add("n1", "vib", 0, 1.0).settings.window_n == 256
