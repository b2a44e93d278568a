"""The latest value per device and channel: what a live view shows, apart from the summaries.

Summaries stay the filed record; an operator watching a machine wants the
value now, not when its window closes. `LatestValues.take` is an ingress
observer (it sees each report as it arrives, before the journal commit), so
the installer page and the live lane to the cloud read values within a
report of the device. Values are coalesced (only the newest per channel is
kept) and the map is bounded: past `max_devices` the device heard from
longest ago is forgotten. `changed_since` lets a sender ship only what moved.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass

from tandem.gateway.reports import DeviceReport


@dataclass(frozen=True, slots=True)
class LiveValue:
    """One channel's newest reading."""

    value: float
    t_ms: int


@dataclass(frozen=True, slots=True)
class DeviceValues:
    """A device's newest reading per channel, and the version that last changed it."""

    device: str
    version: int
    channels: dict[str, LiveValue]


class LatestValues:
    """Newest value per (device, channel), coalesced, bounded by device count."""

    def __init__(self, max_devices: int = 10_000) -> None:
        self.max_devices = max_devices
        self.version = 0  # counts every report taken: a cursor for changed_since
        self.forgotten = 0  # devices dropped to stay within max_devices
        self._devices: OrderedDict[str, tuple[int, dict[str, LiveValue]]] = OrderedDict()

    def take(self, item: DeviceReport) -> None:
        """Remember a report's values (an ingress observer: cheap, never raises)."""
        self.version += 1
        _, channels = self._devices.pop(item.device, (0, {}))
        for channel, value in item.report.values.items():
            previous = channels.get(channel)
            if previous is None or previous.t_ms <= item.t_ms:  # a late resend is not newer
                channels[channel] = LiveValue(float(value), item.t_ms)
        self._devices[item.device] = (self.version, channels)
        while len(self._devices) > self.max_devices:
            self._devices.popitem(last=False)
            self.forgotten += 1

    def device(self, device: str) -> DeviceValues | None:
        """The newest values of one device, None if it has not reported (or was forgotten)."""
        entry = self._devices.get(device)
        return None if entry is None else DeviceValues(device, entry[0], dict(entry[1]))

    def devices(self) -> list[str]:
        """Devices with values, most recently reported last."""
        return list(self._devices)

    def changed_since(self, version: int, devices: Iterable[str]) -> list[DeviceValues]:
        """Those of devices whose values changed after version (what a live sender ships)."""
        found = (self.device(d) for d in devices)
        return [v for v in found if v is not None and v.version > version]
