"""The gateway's status reporter: what it measures, and a cloud it cannot reach is a WARNING,
a counted outcome and `link_up` false, never a crash (the e2e test covers the real cloud).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from prometheus_client import CollectorRegistry

from tandem.gateway.cloudlink.client import CloudEndpoint
from tandem.gateway.cloudlink.statusreport import (
    QueueFigures,
    StatusReporter,
    describe,
    memory_used_bytes,
)
from tandem.gateway.config import StatusSection
from tandem.gateway.store.database import DATABASE_FILE, GatewayDatabase
from tandem.gateway.store.outbox import Outbox
from tandem.wire.cose import SoftwareSigner
from tests.ports import free_port


@pytest.fixture
def db(tmp_path: Path) -> Iterator[GatewayDatabase]:
    database = GatewayDatabase(tmp_path / DATABASE_FILE)
    yield database
    database.close()


def test_memory_in_use_is_total_minus_available(tmp_path: Path) -> None:
    meminfo = tmp_path / "meminfo"
    meminfo.write_text("MemTotal:  1000 kB\nMemFree:  100 kB\nMemAvailable:  400 kB\n")
    assert memory_used_bytes(meminfo) == 600 * 1024
    assert memory_used_bytes() > 0


def test_the_description_is_in_standard_units(tmp_path: Path) -> None:
    r = describe("gw-01", "", StatusSection(score_rounds=1, accelerators=("npu",)), tmp_path)
    assert (r.place, r.site, r.accelerators) == ("gw-01", "gw-01", ("npu",))
    assert r.cores >= 1 and r.score > 0 and r.memory_bytes > 0 and r.storage_free_bytes > 0


def test_an_unreachable_cloud_is_counted_and_logged_and_the_link_reported_down(
        db: GatewayDatabase, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    registry = CollectorRegistry()
    endpoint = CloudEndpoint(f"http://127.0.0.1:{free_port()}", tmp_path / "ca.pem", 2.0)

    async def offload(fn: Callable[..., Any], *args: Any) -> Any:
        return fn(*args)

    async def scenario() -> tuple[bool, bool]:
        reporter = StatusReporter("gw-01", StatusSection(score_rounds=1), tmp_path, Outbox(db),
                                  endpoint, SoftwareSigner(ec.generate_private_key(ec.SECP256R1())),
                                  offload, registry, queue=lambda: QueueFigures(4, 10.0, 2))
        reporter.resources = describe("gw-01", "", StatusSection(score_rounds=1), tmp_path)
        try:
            delivered = await reporter.report_once()
            status = await reporter._status(None)
            return delivered, status.link_up
        finally:
            await reporter.close()

    with caplog.at_level(logging.WARNING):
        delivered, link_up = asyncio.run(scenario())
    assert (delivered, link_up) == (False, False)
    assert registry.get_sample_value("tandem_gw_status_reports_total",
                                     {"outcome": "failed"}) == 1.0
    assert "status report not delivered" in caplog.text
