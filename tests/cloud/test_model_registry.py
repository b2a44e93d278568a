"""The model registry: versions registered from a trainer's output, promoted only when better
(or forced by an admin), released as signed manifests, all through the CLI and the API, audited.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tandem.cloud import close_app, create_app
from tandem.cloud.cli import main as cli
from tandem.cloud.config import load_config
from tandem.tools.pki import SiteCA
from tandem.wire.modelrelease import open_manifest
from tests.cloud.conftest import bearer, token_for
from tests.enrolkit import cloud_mapping, policy_key
from tests.modelkit import write_version


def _config_file(tmp_path: Path) -> Path:
    mapping = cloud_mapping(tmp_path, SiteCA.create(tmp_path / "pki", "site-a"))
    lines = [f'version = 1\nmode = "development"\ndata_dir = "{mapping["data_dir"]}"']
    for section in ("server", "enrol", "policy"):
        lines.append(f"[{section}]")
        lines += [f'{k} = "{v}"' for k, v in mapping[section].items()]
    path = tmp_path / "cloud.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_register_list_show_promote_and_release_from_the_command_line(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = str(_config_file(tmp_path))
    first = write_version(tmp_path / "m1", "m-0001", seed=1, f1=0.80)
    second = write_version(tmp_path / "m2", "m-0002", seed=2, parent="m-0001", f1=0.75)
    code, out, err = _run(capsys, "model", "register", "--config", config, str(first))
    assert code == 0 and out.startswith("model m-0001 registered"), err
    code, _, err = _run(capsys, "model", "register", "--config", config, str(first))
    assert code == 1 and "already registered" in err
    orphan = write_version(tmp_path / "m9", "m-0009", seed=9, parent="m-0008")
    code, _, err = _run(capsys, "model", "register", "--config", config, str(orphan))
    assert code == 1 and "parent m-0008 is not registered" in err
    (second / "model.tflite").write_bytes(b"changed after training")
    code, _, err = _run(capsys, "model", "register", "--config", config, str(second))
    assert code == 1 and "does not match the card" in err
    second = write_version(tmp_path / "m2", "m-0002", seed=2, parent="m-0001", f1=0.75)
    assert _run(capsys, "model", "register", "--config", config, str(second))[0] == 0
    code, out, _ = _run(capsys, "model", "list", "--config", config)
    listed = json.loads(out)
    assert [(m["seq"], m["version"], m["parent"]) for m in listed] == [
        (1, "m-0001", None), (2, "m-0002", "m-0001")]
    assert listed[0]["card"]["metrics"]["f1"] == 0.80 and listed[0]["created_by"]
    assert _run(capsys, "model", "promote", "--config", config, "m-0001")[0] == 0
    code, _, err = _run(capsys, "model", "promote", "--config", config, "m-0002")
    assert code == 1 and "does not beat the promoted m-0001" in err
    assert _run(capsys, "model", "promote", "--config", config, "m-0002", "--force")[0] == 0
    code, out, _ = _run(capsys, "model", "show", "--config", config, "m-0001")
    assert json.loads(out)["promoted"] is False
    code, out, err = _run(capsys, "model", "release", "--config", config, "m-0002")
    assert (code, out.strip()) == (0, "model m-0002 released"), err


def test_the_api_lists_versions_and_only_an_admin_may_force_a_promotion(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = _config_file(tmp_path)
    for version, seed, f1 in (("m-0001", 1, 0.8), ("m-0002", 2, 0.7), ("m-0003", 3, 0.9)):
        directory = write_version(tmp_path / version, version, seed=seed, f1=f1)
        assert _run(capsys, "model", "register", "--config", str(config), str(directory))[0] == 0
    app = create_app(load_config(config))
    try:
        client = app.test_client()
        viewer, operator, admin = (bearer(token_for(app, role))
                                   for role in ("viewer", "operator", "admin"))
        listed = client.get("/api/v1/models", headers=viewer).json["models"]
        assert [m["version"] for m in listed] == ["m-0001", "m-0002", "m-0003"]
        assert client.get("/api/v1/models/m-0404", headers=viewer).status_code == 404
        assert client.post("/api/v1/models/m-0001/promote", headers=viewer).status_code == 403
        assert client.post("/api/v1/models/m-0001/promote", headers=operator).status_code == 200
        worse = client.post("/api/v1/models/m-0002/promote", headers=operator)
        assert (worse.status_code, worse.json["error"]) == (409, "not_promoted")
        forced = client.post("/api/v1/models/m-0002/promote", json={"force": True},
                             headers=operator)
        assert forced.status_code == 403
        assert client.post("/api/v1/models/m-0002/promote", json={"force": True},
                           headers=admin).status_code == 200
        assert client.post("/api/v1/models/m-0003/promote", headers=operator).status_code == 200
        assert client.post("/api/v1/models/m-0003/release", headers=operator).status_code == 200
        audit = client.get("/api/v1/audit", headers=admin).json
        events = [e["event"] for e in audit.get("events", audit.get("entries", []))]
        assert events.count("model.promote") == 3 and "model.release" in events
    finally:
        close_app(app)
    released = _saved_manifest(tmp_path, config)
    opened = open_manifest(released, policy_key(tmp_path).public_key())
    assert opened.card.version == "m-0003" and opened.seq == 3 and not opened.rollback
    assert opened.artefacts[0].kind == "full"


def _saved_manifest(tmp_path: Path, config: Path) -> bytes:
    from tandem.cloud.db import engine as database
    from tandem.cloud.models import registry

    with database.cli_session(load_config(config)) as session:
        row = registry.latest_release(session, "m-0003")
        assert row is not None
        return row.envelope


def test_a_rollout_is_paused_resumed_and_aborted_through_the_api_and_every_step_is_logged(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = _config_file(tmp_path)
    for version, seed in (("m-0001", 1), ("m-0002", 2)):
        directory = write_version(tmp_path / version, version, seed=seed)
        assert _run(capsys, "model", "register", "--config", str(config), str(directory))[0] == 0
    app = create_app(load_config(config))
    try:
        client = app.test_client()
        viewer, operator = (bearer(token_for(app, role)) for role in ("viewer", "operator"))
        body = {"group": "plant-a", "version": "m-0002", "previous": "m-0001",
                "canaries": ["gw-01"], "wave_size": 2, "limits": {"soak_s": 60}}
        assert client.post("/api/v1/rollouts", json=body, headers=viewer).status_code == 403
        started = client.post("/api/v1/rollouts", json=body, headers=operator)
        assert started.status_code == 200 and started.json["stage"] == "shadow"
        again = client.post("/api/v1/rollouts", json=body, headers=operator)
        assert (again.status_code, again.json["error"]) == (409, "not_started")
        bad = client.post("/api/v1/rollouts", headers=operator,
                          json={**body, "group": "plant-b", "limits": {"colour": 1}})
        assert bad.status_code == 409
        for action, status, state in (("pause", 200, "paused"), ("pause", 409, None),
                                      ("resume", 200, "running"), ("abort", 200, "aborted"),
                                      ("resume", 404, None)):
            answer = client.post(f"/api/v1/rollouts/plant-a/{action}", headers=operator)
            assert answer.status_code == status, (action, answer.json)
            if state:
                assert answer.json["state"] == state
        shown = client.get("/api/v1/rollouts/plant-a", headers=viewer).json
        assert [s["step"] for s in shown["log"]] == ["started", "pause", "resume", "abort"]
        assert shown["limits"]["soak_s"] == 60
        assert client.post("/api/v1/rollouts", json=body, headers=operator).status_code == 200
    finally:
        close_app(app)
