"""Security policies at the cloud: validated files, signed monotonic versions, gateway access."""

from __future__ import annotations

import base64
import json
import time
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from tandem.cloud.cli import main as cli
from tandem.cloud.policy.release import PolicyFileError, load_policy_file
from tandem.tools.pki import SiteCA
from tandem.wire.cose import SoftwareSigner
from tandem.wire.gwrequest import sign_request
from tandem.wire.release import open_release
from tests.enrolkit import cloud_mapping, policy_key

GOOD = """\
version = 1

[privacy]
device_ids = "pseudonymise"

[[privacy.rule]]
field = "hum"
action = "drop"

[[privacy.rule]]
field = "lat"
action = "generalise"
digits = 2

[devices]
revoked = ["node-66"]
"""


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


def test_errors_name_file_line_and_field(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text(GOOD.replace("digits = 2", "digits = 2\nstep = 0.5"))
    with pytest.raises(PolicyFileError, match=r"bad.toml:10: privacy.rule\[1\]"):
        load_policy_file(bad)
    bad.write_text(GOOD.replace('action = "drop"', 'action = "blur"'))
    with pytest.raises(PolicyFileError, match=r"bad.toml:8: privacy.rule\[0\].action: .*blur"):
        load_policy_file(bad)
    bad_json = tmp_path / "bad.json"
    bad_json.write_text(json.dumps({"version": 1, "limits": {"max_actions_per_minute": -1}},
                                   indent=2))
    with pytest.raises(PolicyFileError, match=r"bad.json:4: limits.max_actions_per_minute"):
        load_policy_file(bad_json)
    bad_json.write_text('{"version": 1,\n "devices": {"colour": 1}}')
    with pytest.raises(PolicyFileError, match=r"bad.json:2: devices.colour: unknown field"):
        load_policy_file(bad_json)


def test_push_signs_increasing_versions_and_status_shows_them(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = _config_file(tmp_path)
    policy = tmp_path / "policy.toml"
    policy.write_text(GOOD)
    for version in (1, 2):
        code, out, err = _run(capsys, "policy", "push", "--config", str(config),
                              "--group", "plant-a", str(policy))
        assert (code, out.strip()) == (0, f"policy plant-a v{version} published"), err
    code, out, _ = _run(capsys, "policy", "status", "--config", str(config), "--json")
    assert json.loads(out)["groups"][0]["version"] == 2
    policy.write_text("version = 2\n")
    code, _, err = _run(capsys, "policy", "push", "--config", str(config), "--group", "x",
                        str(policy))
    assert code == 1 and "policy.toml:1: version" in err


def test_tokens_print_once_and_gateways_fetch_their_groups_signed_release(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from tandem.cloud import close_app, create_app
    from tandem.cloud.config import load_config

    config = _config_file(tmp_path)
    code, out, _ = _run(capsys, "enrol", "token", "--config", str(config), "--gateway", "gw-01",
                        "--group", "plant-a", "--ttl", "15m")
    assert code == 0 and out.startswith("tdi_") and len(out.strip()) == 47
    code, _, err = _run(capsys, "enrol", "token", "--config", str(config), "--gateway", "../x")
    assert code == 1 and "gateway name" in err
    policy = tmp_path / "policy.toml"
    policy.write_text(GOOD)
    _run(capsys, "policy", "push", "--config", str(config), "--group", "default", str(policy))
    app = create_app(load_config(config))
    try:
        client = app.test_client()
        stranger = ec.generate_private_key(ec.SECP256R1())
        signed = sign_request("policy-get", "gw-01", {}, time.time_ns() // 10**6,
                              SoftwareSigner(stranger))
        header = {"X-Tandem-Signed": base64.urlsafe_b64encode(signed).decode().rstrip("=")}
        response = client.get("/policy/v1/current", headers=header)
        assert (response.status_code, response.json["error"]) == (403, "unknown_gateway")
        response = client.get("/policy/v1/current")
        assert response.status_code == 400
    finally:
        close_app(app)
    release = _saved_release(tmp_path, config)
    assert release.version == 1 and release.doc.devices.revoked == ("node-66",)


def _saved_release(tmp_path: Path, config: Path):  # type: ignore[no-untyped-def]
    from sqlalchemy import create_engine, text

    from tandem.cloud.config import load_config

    url = load_config(config).database.url
    with create_engine(url).connect() as conn:
        envelope = conn.execute(text("SELECT envelope FROM policy_releases")).scalar_one()
    return open_release(envelope, policy_key(tmp_path).public_key())
