"""A simulated fleet's stored summaries and the operator labels its ground truth implies.

Each device runs one of the firmware's host scenarios (firmware/sim.py:
normal, bearing_fault, over_temp), the same pure functions the MicroPython
host board samples. A fault device behaves normally until its onset window,
then the scenario's fault grows from its start (`growth` times slower than
on the host board, so early fault windows are hard to tell from normal).
Windows are `samples` sensor samples summarised per channel (min, max,
mean, last), as a gateway does.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Iterator
from dataclasses import dataclass
from types import ModuleType

from tandem.cloud.labels.store import FAULT, NORMAL, Label
from tandem.tools.build import FIRMWARE
from tandem.wire.batch import Summary

SCENARIOS = ("normal", "bearing_fault", "over_temp")
T0_MS = 1_700_000_000_000
WINDOW_MS = 60_000


@dataclass(frozen=True, slots=True)
class SimDevice:
    """One simulated machine: its scenario and the window its fault starts in."""

    name: str
    scenario: str
    seed: int
    onset: int  # window index; normal devices never reach it


@dataclass(frozen=True, slots=True)
class SimFleet:
    """Devices and how many windows each reports."""

    devices: tuple[SimDevice, ...]
    windows: int
    samples: int = 10
    start_ms: int = T0_MS
    growth: int = 1  # a fault grows this many times slower than firmware/sim.py's

    def t0(self, window: int) -> int:
        """Start of window number `window` (ms)."""
        return self.start_ms + window * WINDOW_MS

    def faulty(self, device: SimDevice, window: int) -> bool:
        """Ground truth: the device's fault has started by this window."""
        return device.scenario != "normal" and window >= device.onset


def fleet(devices: int = 12, windows: int = 120, seed: int = 7,
          start_ms: int = T0_MS, growth: int = 1) -> SimFleet:
    """Devices cycling through the scenarios, fault onsets spread over the run."""
    made = []
    for i in range(devices):
        scenario = SCENARIOS[i % len(SCENARIOS)]
        onset = windows if scenario == "normal" else windows // 4 + (i * 37 + seed) % (windows // 2)
        made.append(SimDevice(f"sim-{i:02d}", scenario, seed * 1000 + i, onset))
    return SimFleet(tuple(made), windows, start_ms=start_ms, growth=growth)


def summaries(sim_fleet: SimFleet) -> Iterator[Summary]:
    """Every device's per-window summaries of temp and vib, in time order."""
    sim = _sim_module()
    for window in range(sim_fleet.windows):
        for device in sim_fleet.devices:
            yield from _window(sim, sim_fleet, device, window)


def labels(sim_fleet: SimFleet, start_window: int, end_window: int) -> list[Label]:
    """Operator labels agreeing with the ground truth over [start_window, end_window)."""
    out: list[Label] = []
    for device in sim_fleet.devices:
        onset = min(max(device.onset, start_window), end_window)
        spans = [(start_window, onset, NORMAL), (onset, end_window, FAULT)]
        for first, last, kind in spans:
            if first < last:
                out.append(Label(len(out) + 1, device.name, None, sim_fleet.t0(first),
                                 sim_fleet.t0(last), None, None, kind, "simulated", "sim", 0))
    return out


def _window(sim: ModuleType, sim_fleet: SimFleet, device: SimDevice,
            window: int) -> Iterator[Summary]:
    temps, vibs = [], []
    for k in range(sim_fleet.samples):
        n = window * sim_fleet.samples + k + 1
        faulty = sim_fleet.faulty(device, window)
        scenario = device.scenario if faulty else "normal"
        # the scenario's own fault starts after its sample _FAULT_START
        after = (n - device.onset * sim_fleet.samples) // sim_fleet.growth
        since = int(sim._FAULT_START) + 1 + after if faulty else n
        temps.append(sim.temp_centi(device.seed, scenario, since) / 100)
        vibs.append(sim.vib_milli_g(device.seed, scenario, since) / 1000)
    t0 = sim_fleet.t0(window)
    for channel, values in (("temp", temps), ("vib", vibs)):
        low, high = min(values), max(values)
        # A float sum can put the mean of equal values an ulp outside them; the cloud checks.
        mean = min(max(sum(values) / len(values), low), high)
        yield Summary(device.name, channel, t0, t0 + WINDOW_MS, len(values), low, high, mean,
                      values[-1])


def _sim_module() -> ModuleType:
    """firmware/sim.py, imported by path (it is MicroPython code with no package)."""
    spec = importlib.util.spec_from_file_location("tandem_firmware_sim", FIRMWARE / "sim.py")
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load {FIRMWARE / 'sim.py'}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
