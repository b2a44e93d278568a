"""Plain data passed between the gateway's layers, and the small interfaces between them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from tandem.wire.report import Report


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

    async def submit(self, item: DeviceReport) -> bool:
        """Take one report durably; False when full or failing, so access answers 5.03.

        Returns only once the report is safe on disk: the 2.04 a node gets is
        a promise that the reading will reach the cloud.
        """
        ...
