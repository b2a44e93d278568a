"""`tandem-cloud user|token|audit|key`: manage access from the shell; every change is audited."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tandem.cloud import close_app, create_app
from tandem.cloud.cli.main import main
from tandem.cloud.config import load_config


@pytest.fixture
def config_file(tmp_path: Path) -> Path:
    path = tmp_path / "cloud.toml"
    path.write_text('version = 1\nmode = "development"\ndata_dir = "data"\n'
                    '[security]\ntoken_max_days = 30\n')
    return path


def run(capsys, config: Path, *argv: str) -> tuple[int, str, str]:
    code = main([*argv, "--config", str(config)])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize("argv", [["user"], ["user", "add"], ["user", "list"],
                                  ["user", "disable"], ["user", "enable"], ["token"],
                                  ["token", "create"], ["token", "list"], ["token", "revoke"],
                                  ["audit"], ["audit", "verify"], ["key"], ["key", "rotate"]])
def test_every_access_subcommand_has_help(capsys, argv):
    with pytest.raises(SystemExit) as exited:
        main([*argv, "--help"])
    assert exited.value.code == 0
    assert "usage: tandem-cloud" in capsys.readouterr().out


def test_users_are_added_listed_and_disabled(capsys, config_file, tmp_path):
    secret = tmp_path / "pw"
    secret.write_text("a long enough password\n")
    code, out, _ = run(capsys, config_file, "user", "add", "alice", "--role", "admin",
                       "--password-file", str(secret), "--email", "alice@example.org")
    assert (code, out) == (0, "user alice added (admin)\n")
    assert run(capsys, config_file, "user", "add", "ci", "--role", "viewer",
               "--no-password")[0] == 0
    code, _, err = run(capsys, config_file, "user", "add", "alice", "--role", "viewer",
                       "--no-password")
    assert code == 1 and "user 'alice' exists" in err
    short = tmp_path / "short"
    short.write_text("tooshort\n")
    code, _, err = run(capsys, config_file, "user", "add", "bob", "--role", "viewer",
                       "--password-file", str(short))
    assert code == 1 and "passwords must be 12" in err
    assert run(capsys, config_file, "user", "disable", "ci")[1] == "user ci disabled\n"
    assert run(capsys, config_file, "user", "disable", "ci")[1] == "user ci already disabled\n"
    lines = run(capsys, config_file, "user", "list")[1].splitlines()
    assert [line.split("\t")[:4] for line in lines] == [
        ["alice", "admin", "active", "password"], ["ci", "viewer", "disabled", "token-only"]]
    listed = json.loads(run(capsys, config_file, "user", "list", "--json")[1])
    assert listed[0]["email"] == "alice@example.org"


def test_a_token_is_printed_once_works_until_revoked_and_everything_is_audited(
        capsys, config_file):
    run(capsys, config_file, "user", "add", "ci", "--role", "viewer", "--no-password")
    code, out, err = run(capsys, config_file, "token", "create", "--user", "ci", "--name",
                         "deploy", "--note", "pipeline")
    token = out.strip()
    assert code == 0 and token.startswith("tdm_") and len(token) > 40
    assert "shown only this once" in err
    code, _, err = run(capsys, config_file, "token", "create", "--user", "ci", "--name", "x",
                       "--expires-days", "31")
    assert code == 1 and "1..30" in err
    app = create_app(load_config(config_file))
    try:
        client = app.test_client()
        headers = {"Authorization": f"Bearer {token}"}
        assert client.get("/api/v1/devices", headers=headers).status_code == 200
        assert client.get("/api/v1/export?start=0&end=1", headers=headers).status_code == 403
        assert run(capsys, config_file, "token", "revoke", "--user", "ci", "--name",
                   "deploy")[1] == "token ci/deploy revoked\n"
        assert client.get("/api/v1/devices", headers=headers).status_code == 401
    finally:
        close_app(app)
    listed = json.loads(run(capsys, config_file, "token", "list", "--json")[1])
    assert [(t["user"], t["name"], t["state"], t["note"]) for t in listed] == [
        ("ci", "deploy", "revoked", "pipeline")]
    assert listed[0]["expires"] - listed[0]["created"] == 30 * 24 * 3600 * 1000
    code, out, _ = run(capsys, config_file, "audit", "verify")
    assert (code, out.split(":")[0]) == (0, "audit log ok")
    assert out.startswith("audit log ok: 3 rows")  # user.add, token.create, token.revoke


def test_key_rotate_keeps_old_values_readable(capsys, config_file):
    run(capsys, config_file, "user", "add", "old", "--role", "viewer", "--no-password",
        "--email", "old@example.org")
    code, out, _ = run(capsys, config_file, "key", "rotate")
    assert code == 0 and out.startswith("data key k2 is now current")
    run(capsys, config_file, "user", "add", "new", "--role", "viewer", "--no-password",
        "--email", "new@example.org")
    listed = json.loads(run(capsys, config_file, "user", "list", "--json")[1])
    assert [u["email"] for u in listed] == ["new@example.org", "old@example.org"]
