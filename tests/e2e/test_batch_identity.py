"""Batch identity against a real cloud process: a gateway's reset or restored data
directory never makes the cloud drop new data as "duplicate".

A wiped directory draws a new epoch, so its batches, numbered from 1 again,
are new to the cloud. A directory restored from an old backup keeps its epoch
and reuses numbers the cloud holds with other content: the cloud answers 409
batch_conflict with where to resume, and the gateway renumbers, loudly, and
loses nothing.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from tandem.gateway.cloudlink.client import CloudEndpoint
from tandem.gateway.cloudlink.uplink import Outcome, Uplink
from tandem.gateway.config import UplinkSection
from tandem.gateway.metrics import GatewayMetrics
from tandem.gateway.store.database import GatewayDatabase
from tandem.gateway.store.outbox import Outbox, Priority
from tandem.tools.site import Site, local_site
from tandem.wire.batch import Summary
from tandem.wire.cose import SoftwareSigner
from tests.e2e.readings import summaries

T0 = 1_764_230_400_000


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    running = local_site(tmp_path_factory.mktemp("site"))
    try:
        running.start_cloud()
        yield running
    finally:
        running.stop_all()


@pytest.fixture(scope="module")
def client(site: Site) -> Iterator[httpx.Client]:
    with site.cloud_client() as c:
        yield c


def _windows(device: str, first: int, count: int) -> list[Summary]:
    return [Summary(device, "temp", T0 + i * 1000, T0 + i * 1000 + 1000, 1, 20.0, 20.0, 20.0,
                    20.0) for i in range(first, first + count)]


def _drain(site: Site, data_dir: Path, records: list[Summary],
           metrics: GatewayMetrics | None = None) -> tuple[list[Outcome], int]:
    """Put records in the outbox of data_dir and deliver them one per batch; (outcomes, epoch)."""
    key_pem = (site.pki / "gateway" / site.gateway_id / "key.pem").read_bytes()
    key = serialization.load_pem_private_key(key_pem, None)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    database = GatewayDatabase(data_dir / "gateway.sqlite3")
    outbox = Outbox(database)
    config = UplinkSection(url=site.cloud_url, batch_max_records=1)

    async def deliver() -> list[Outcome]:
        uplink = Uplink(config, CloudEndpoint(site.cloud_url, site.pki / "ca.pem", 10.0),
                        site.gateway_id, outbox, SoftwareSigner(key), metrics or GatewayMetrics())
        await outbox.put(records, Priority.SUMMARY)
        outcomes = []
        try:
            while (outcome := await uplink.deliver_one()) is not Outcome.EMPTY:
                outcomes.append(outcome)
                assert len(outcomes) < 3 * len(records), outcomes
        finally:
            await uplink.close()
        return outcomes

    try:
        return asyncio.run(deliver()), outbox.epoch
    finally:
        database.close()


def _stored(client: httpx.Client, device: str) -> list[int]:
    return sorted(p["t0"] - T0 for p in summaries(client, device))


def test_a_wiped_data_directory_starts_a_new_epoch_and_its_batches_are_stored(
        site: Site, client: httpx.Client, tmp_path: Path) -> None:
    before, first_epoch = _drain(site, tmp_path / "disk-1", _windows("wipe-01", 0, 3))
    # The data directory is lost (a new disk): numbering starts at 1 again.
    after, second_epoch = _drain(site, tmp_path / "disk-2", _windows("wipe-01", 3, 3))
    assert before == after == [Outcome.DELIVERED] * 3
    assert first_epoch != second_epoch
    assert _stored(client, "wipe-01") == [0, 1000, 2000, 3000, 4000, 5000]


def test_a_directory_restored_from_an_old_backup_conflicts_loudly_and_loses_nothing(
        site: Site, client: httpx.Client, tmp_path: Path,
        caplog: pytest.LogCaptureFixture) -> None:
    live, backup = tmp_path / "live", tmp_path / "backup"
    _drain(site, live, [])                                  # a new directory: its epoch drawn
    shutil.copytree(live, backup)                           # the backup, taken now
    _drain(site, live, _windows("restore-01", 0, 2))        # batches 1 and 2 reach the cloud
    shutil.rmtree(live)
    shutil.copytree(backup, live)                           # restored: numbering back at 1
    metrics = GatewayMetrics()
    with caplog.at_level(logging.WARNING):
        outcomes, _ = _drain(site, live, _windows("restore-01", 2, 2), metrics)
    # Batch 1 again, with other content: a conflict, renumbered past the cloud's 2.
    assert outcomes == [Outcome.RENUMBERED, Outcome.DELIVERED, Outcome.DELIVERED]
    assert metrics.registry.get_sample_value("tandem_gw_uplink_batches_total",
                                             {"result": "conflict"}) == 1
    assert any("other content" in r.getMessage() and r.levelno == logging.WARNING
               for r in caplog.records)
    assert _stored(client, "restore-01") == [0, 1000, 2000, 3000]
    # Metrics are per gunicorn worker (docs/deployment.md): the conflict is counted by the
    # worker that answered it, so look at a few scrapes.
    scrapes = [client.get("/metrics").text for _ in range(20)]
    assert any('tandem_cloud_batches_rejected_total{reason="batch_conflict"} 1.0' in text
               for text in scrapes)
