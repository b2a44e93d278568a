"""The model agent against a real cloud over a real socket: signed releases fetched in chunks,
resumed after a cut link and a restart, checked before the atomic swap, refused when bad.
"""

from __future__ import annotations

import asyncio
import hashlib
import resource
import signal
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from flask import Flask

from tandem.cloud.db import engine as database
from tandem.cloud.models import registry
from tandem.gateway.config import GatewayConfig
from tandem.gateway.identity import enrolment as enrol_client
from tandem.tools.pki import SiteCA
from tandem.wire.cose import SoftwareSigner
from tandem.wire.modelrelease import open_manifest, sign_manifest
from tests.enrolkit import (
    gateway_config,
    new_token,
    policy_key,
    wsgi_client,
)
from tests.gateway import modelagentkit
from tests.gateway.modelagentkit import CHUNK, Gateway
from tests.gateway.modelagentkit import register_version as _register
from tests.netcut import CuttableLink

app = modelagentkit.app  # fixtures: the cloud, and the cuttable link in front of it
link = modelagentkit.link


@pytest.fixture
def config(tmp_path: Path, app: Flask) -> GatewayConfig:
    gw = gateway_config(tmp_path / "gw", SiteCA.load(tmp_path / "pki"))
    enrol_client.enrol(gw, "http://cloud", new_token(app, "gw-01", "plant-a"),
                       client=wsgi_client(app))
    return gw


def _release(app: Flask, version: str, rollback: bool = False) -> bytes:
    with database.sessions(app).begin() as session:
        return registry.sign_release(session, app.config["TANDEM"], version,
                                     time.time_ns() // 10**6, rollback)


def _artefact_path(app: Flask, version: str) -> Path:
    with database.sessions(app)() as session:
        row = registry.find(session, version)
        assert row is not None
        return registry.artefact_dir(app.config["TANDEM"]) / row.artefact_sha256


def test_a_release_is_fetched_verified_and_swapped_in_and_survives_a_restart(
        tmp_path: Path, app: Flask, config: GatewayConfig, link: CuttableLink) -> None:
    gw = Gateway(config, tmp_path, link)
    assert gw.check() == "none"
    _register(app, tmp_path, "m-0001", seed=1)
    _release(app, "m-0001")
    assert gw.check() == "applied"
    assert gw.slot.model is not None and gw.agent.active is not None
    assert gw.agent.active.version == "m-0001"
    assert gw.check() == "unchanged"
    again = Gateway(config, tmp_path, link)
    asyncio.run(again.agent.restore())
    assert again.slot.model is not None and again.agent.active is not None
    assert again.agent.active.version == "m-0001"


def test_a_cut_link_and_a_restart_resume_with_at_most_one_chunk_sent_again(
        tmp_path: Path, app: Flask, config: GatewayConfig, link: CuttableLink) -> None:
    _register(app, tmp_path, "m-0001", seed=1)
    _release(app, "m-0001")
    size = _artefact_path(app, "m-0001").stat().st_size
    assert size > 4 * CHUNK
    chunks = [0]

    def cut_at_half(response: httpx.Response) -> None:
        if response.status_code == 206:
            chunks[0] += 1
            if chunks[0] == (size // CHUNK) // 2:
                link.set_mode("refuse")

    first = Gateway(config, tmp_path, link, on_response=cut_at_half)
    assert first.check() == "refused" and first.refused("transfer") == 1
    assert first.slot.model is None
    sent_before = first.agent.last_download.received if first.agent.last_download else 0
    assert 0 < sent_before < size
    link.set_mode("pass")
    restarted = Gateway(config, tmp_path, link)  # a new process: only the disk carries over
    assert restarted.check() == "applied"
    download = restarted.agent.last_download
    assert download is not None
    assert download.resumed_from == sent_before
    assert sent_before + download.received - size <= CHUNK
    assert restarted.slot.model is not None


def test_a_chunk_with_wrong_bytes_is_caught_and_nothing_is_swapped(
        tmp_path: Path, app: Flask, config: GatewayConfig, link: CuttableLink) -> None:
    _register(app, tmp_path, "m-0001", seed=1)
    _release(app, "m-0001")
    gw = Gateway(config, tmp_path, link)
    assert gw.check() == "applied"
    _register(app, tmp_path, "m-0002", seed=2, parent="m-0001", f1=0.9)
    manifest = open_manifest(_release(app, "m-0002"), policy_key(tmp_path).public_key())
    chosen = manifest.best_for({"m-0001"})
    assert chosen is not None
    path = registry.artefact_dir(app.config["TANDEM"]) / chosen.sha256
    data = bytearray(path.read_bytes())
    data[min(CHUNK + 10, len(data) - 1)] ^= 0xFF  # tampered on the way (here: at rest)
    path.write_bytes(bytes(data))
    active = gw.slot.model
    assert gw.check() == "refused"
    assert gw.metrics.registry.get_sample_value("tandem_gw_model_chunks_refused_total") == 3
    assert gw.slot.model is active and gw.agent.active is not None
    assert gw.agent.active.version == "m-0001"
    assert not (config.gateway.data_dir / "models" / "versions" / "m-0002.tflite").exists()


def test_foreign_signatures_downgrades_bad_models_and_wrong_shapes_are_refused(
        tmp_path: Path, app: Flask, config: GatewayConfig, link: CuttableLink) -> None:
    gw = Gateway(config, tmp_path, link)
    _register(app, tmp_path, "m-0001", seed=1)
    _register(app, tmp_path, "m-0002", seed=2, parent="m-0001")
    _register(app, tmp_path, "m-0003", seed=3, features=8)          # card says 8 inputs
    _register(app, tmp_path, "m-0004", seed=4, content=b"TFL3" * 100)  # not a model
    _release(app, "m-0002")
    assert gw.check() == "applied"
    active = gw.slot.model

    from cryptography.hazmat.primitives.asymmetric import ec
    other = ec.generate_private_key(ec.SECP256R1())
    genuine = open_manifest(_release(app, "m-0003"), policy_key(tmp_path).public_key())
    forged = sign_manifest(genuine, SoftwareSigner(other), other.public_key())
    assert asyncio.run(gw.agent.consider(forged)) == "refused" and gw.refused("signature") == 1
    assert gw.check() == "refused" and gw.refused("input_shape") == 1
    _release(app, "m-0004")
    assert gw.check() == "refused" and gw.refused("load") == 1
    _release(app, "m-0001")
    assert gw.check() == "refused" and gw.refused("downgrade") == 1
    assert gw.slot.model is active
    assert gw.agent.active is not None and gw.agent.active.version == "m-0002"
    _release(app, "m-0001", rollback=True)  # an operator's rollback may go back
    assert gw.check() == "applied"
    assert gw.agent.active.version == "m-0001" and gw.agent.active.last_good == "m-0002"


def test_a_full_disk_during_download_is_refused_and_keeps_only_whole_chunks(
        tmp_path: Path, app: Flask, config: GatewayConfig, link: CuttableLink) -> None:
    _register(app, tmp_path, "m-0001", seed=1)
    _release(app, "m-0001")
    gw = Gateway(config, tmp_path, link)
    limit = 2 * CHUNK + 100  # room for two chunks of the partial file, then EFBIG
    previous_handler = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, hard))
    try:
        assert gw.check() == "refused"
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        signal.signal(signal.SIGXFSZ, previous_handler)
    assert gw.metrics.registry.get_sample_value("tandem_gw_model_transfers_total",
                                                {"result": "disk"}) == 1
    part = next((config.gateway.data_dir / "models" / "artefacts").glob("*.part"))
    assert part.stat().st_size == 2 * CHUNK and gw.slot.model is None
    assert gw.check() == "applied"  # room again: it resumes from the two whole chunks
    download = gw.agent.last_download
    assert download is not None and download.resumed_from == 2 * CHUNK
    assert hashlib.sha256(part.with_suffix("").read_bytes()).hexdigest() == part.stem


def test_figures_per_version_reach_the_cloud_and_an_invoke_fault_rolls_back_locally(
        tmp_path: Path, app: Flask, config: GatewayConfig, link: CuttableLink) -> None:
    from tandem.cloud.models import feedback

    gw = Gateway(config, tmp_path, link)
    _register(app, tmp_path, "m-0001", seed=1)
    _register(app, tmp_path, "m-0002", seed=2, parent="m-0001", f1=0.9)
    _release(app, "m-0001")
    assert gw.check() == "applied"
    good = gw.slot.model
    _release(app, "m-0002")
    assert gw.check() == "applied"
    quiet, loud = [1.0] * 16, [1.0] * 8 + [1e4] * 8
    scores = [gw.slot.score(quiet) for _ in range(5)] + [gw.slot.score(loud)]
    assert all(s is not None for s in scores) and scores[-1] > 2.0  # card threshold 2.0

    class Broken:
        def __getattr__(self, name: str) -> Any:
            raise RuntimeError("tensor arena corrupted")

    assert gw.slot.model is not None
    gw.slot.model._interpreter = Broken()  # the model now errors at invoke
    assert gw.slot.score(quiet) is None        # that window goes unscored ...
    assert gw.slot.model is good               # ... and the last-known-good is back at once
    assert gw.slot.score(quiet) is not None
    assert gw.agent.active is not None and gw.agent.active.version == "m-0001"
    assert gw.refused("invoke") == 1
    assert gw.send() == 2
    with database.sessions(app)() as session:
        rows = [feedback.to_plain(r) for r in feedback.reports(session, "m-0002")]
    figures = next(r for r in rows if r["role"] != "event")
    event = next(r for r in rows if r["role"] == "event")
    assert (figures["gateway"], figures["windows"], figures["alarms"], figures["errors"]) == \
        ("gw-01", 6, 1, 1)
    assert sum(figures["detail"]["counts"]) == 6 and figures["latency_p99_ms"] > 0
    assert event["detail"]["event"] == "rolled_back" and "arena" in event["detail"]["reason"]
    assert gw.check() == "unchanged" and gw.agent.active.version == "m-0001"


def test_a_gateway_holding_the_parent_fetches_the_smaller_delta_the_others_the_full_model(
        tmp_path: Path, app: Flask, config: GatewayConfig, link: CuttableLink) -> None:
    from tests.modelkit import model_bytes

    _register(app, tmp_path, "m-0001", seed=1)
    _register(app, tmp_path, "m-0002", seed=1, parent="m-0001",
              content=model_bytes(1, head_bias=0.01))
    _release(app, "m-0001")
    gw = Gateway(config, tmp_path, link)
    assert gw.check() == "applied"
    manifest = open_manifest(_release(app, "m-0002"), policy_key(tmp_path).public_key())
    kinds = {a.kind: a.size for a in manifest.artefacts}
    assert set(kinds) == {"full", "delta"} and kinds["delta"] < kinds["full"]
    assert gw.check() == "applied"
    download = gw.agent.last_download
    assert download is not None and download.artefact.kind == "delta"
    assert download.received == kinds["delta"]
    assert gw.agent.active is not None and gw.agent.active.version == "m-0002"
    (config.gateway.data_dir / "models" / "versions" / "m-0001.tflite").unlink()
    gw.agent.active = None  # as a gateway that never held the parent
    gw.agent._seen = ""
    (config.gateway.data_dir / "models" / "versions" / "m-0002.tflite").unlink()
    assert gw.check() == "applied"
    assert gw.agent.last_download is not None
    assert gw.agent.last_download.artefact.kind == "full"
