"""Plain data passed between the gateway's layers, and the small interfaces between them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from wire.report import Report


@dataclass(frozen=True, slots=True)
class DeviceReport:
    """A reading report with the identity proven by the device's certificate."""

    device: str
    report: Report
    received_ms: int

    @property
    def t_ms(self) -> int:
        """The node's timestamp, or arrival time when the node's clock is unset."""
        return self.report.t_ms or self.received_ms


class ReportSink(Protocol):
    """Where device access hands authenticated reports (the pipeline's entry)."""

    def submit(self, item: DeviceReport) -> bool:
        """Take one report; return False when full, so access can answer 5.03."""
        ...
