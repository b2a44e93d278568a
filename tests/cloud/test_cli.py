"""`tandem-cloud` subcommands: help, init-db, gateway add/revoke/list, serve's refusals."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tandem.cloud.cli.main import main
from tandem.cloud.db import DATABASE_FILE
from tandem.tools.pki import Role, SiteCA


@pytest.fixture
def config_file(tmp_path: Path, pki) -> Path:
    path = tmp_path / "cloud.toml"
    path.write_text(f'version = 1\nmode = "development"\ndata_dir = "data"\n'
                    f'[server]\ntrust_ca = "{pki.ca.cert_pem_path}"\n')
    return path


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize("argv", [[], ["serve"], ["init-db"], ["prune"], ["gateway"],
                                  ["gateway", "add"],
                                  ["gateway", "revoke"], ["gateway", "list"]])
def test_every_subcommand_has_help(capsys, argv):
    with pytest.raises(SystemExit) as exited:
        main([*argv, "--help"])
    assert exited.value.code == 0
    assert "usage: tandem-cloud" in capsys.readouterr().out


def test_init_db_creates_the_database_and_can_repeat(capsys, config_file):
    for _ in range(2):
        code, out, _ = run(capsys, "init-db", "--config", str(config_file))
        assert code == 0
        assert out.startswith("database ready: sqlite:///")
    assert (config_file.parent / "data" / DATABASE_FILE).exists()


def test_gateway_add_is_idempotent_and_listed(capsys, config_file, pki):
    args = ("gateway", "add", "gw-01", "--cert", str(pki.gateway.cert_pem),
            "--config", str(config_file))
    code, out, _ = run(capsys, *args)
    assert (code, out.split()[:3]) == (0, ["gateway", "gw-01", "added"])
    code, out, _ = run(capsys, *args)
    assert (code, out.split()[:3]) == (0, ["gateway", "gw-01", "unchanged"])
    code, out, _ = run(capsys, "gateway", "list", "--config", str(config_file))
    name, status, created, fingerprint = out.strip().split("\t")
    assert (name, status) == ("gw-01", "active")
    assert created.endswith("Z") and fingerprint.startswith("sha256:")
    code, out, _ = run(capsys, "gateway", "list", "--json", "--config", str(config_file))
    assert [(g["name"], g["status"]) for g in json.loads(out)] == [("gw-01", "active")]


def test_init_db_and_gateway_add_on_postgresql(capsys, tmp_path, pki, postgres_cluster):
    from tests.services import postgres_database

    with postgres_database(postgres_cluster) as url:
        path = tmp_path / "pg.toml"
        path.write_text(f'version = 1\nmode = "development"\n[database]\nurl = "{url}"\n'
                        f'[server]\ntrust_ca = "{pki.ca.cert_pem_path}"\n')
        code, out, _ = run(capsys, "init-db", "--config", str(path))
        assert (code, out.split(":")[0]) == (0, "database ready")
        assert "postgresql+psycopg://" in out
        code, out, _ = run(capsys, "gateway", "add", "gw-01", "--cert", str(pki.gateway.cert_pem),
                           "--config", str(path))
        assert (code, out.split()[2]) == (0, "added")
        code, out, _ = run(capsys, "prune", "--config", str(path))
        assert (code, out) == (0, "pruned 0 ledger\npruned 0 raw_requests\npruned 0 raw_snippets\n")


def test_gateway_add_refuses_a_wrong_name_or_foreign_cert(capsys, config_file, pki, tmp_path):
    code, _, err = run(capsys, "gateway", "add", "gw-07", "--cert", str(pki.gateway.cert_pem),
                       "--config", str(config_file))
    assert code == 1 and "CN" in err
    stranger = SiteCA.create(tmp_path / "other", "evil").issue("gw-01", Role.GATEWAY)
    code, _, err = run(capsys, "gateway", "add", "gw-01", "--cert", str(stranger.cert_pem),
                       "--config", str(config_file))
    assert code == 1 and "does not chain" in err
    code, out, _ = run(capsys, "gateway", "list", "--config", str(config_file))
    assert out == ""


def test_gateway_add_needs_trust_ca(capsys, tmp_path, pki):
    bare = tmp_path / "bare.toml"
    bare.write_text('version = 1\nmode = "development"\n')
    code, _, err = run(capsys, "gateway", "add", "gw-01", "--cert", str(pki.gateway.cert_pem),
                       "--config", str(bare))
    assert code == 1 and f"{bare}: server.trust_ca" in err


def test_revoke_then_re_add_needs_replace(capsys, config_file, pki):
    add = ("gateway", "add", "gw-01", "--cert", str(pki.gateway.cert_pem),
           "--config", str(config_file))
    run(capsys, *add)
    assert run(capsys, "gateway", "revoke", "gw-01", "--config", str(config_file))[1] == \
        "gateway gw-01 revoked\n"
    assert run(capsys, "gateway", "revoke", "gw-01", "--config", str(config_file))[1] == \
        "gateway gw-01 already revoked\n"
    code, _, err = run(capsys, *add)
    assert code == 1 and "revoked" in err
    code, out, _ = run(capsys, *add, "--replace")
    assert (code, out.split()[2]) == (0, "replaced")


def test_revoking_an_unknown_gateway_fails(capsys, config_file):
    code, _, err = run(capsys, "gateway", "revoke", "nobody", "--config", str(config_file))
    assert code == 1 and "no gateway called 'nobody'" in err


def test_serve_without_tls_and_without_insecure_flag_refuses(capsys, config_file):
    code, _, err = run(capsys, "serve", "--config", str(config_file))
    assert code == 1 and "server.tls_cert" in err


def test_serve_in_production_with_default_secret_refuses(capsys, tmp_path, pki):
    path = tmp_path / "prod.toml"
    path.write_text(f'version = 1\ndata_dir = "data"\n[server]\n'
                    f'tls_cert = "{pki.server.cert_pem}"\ntls_key = "{pki.server.key_pem}"\n')
    code, _, err = run(capsys, "serve", "--config", str(path))
    assert code == 1 and "refusing to run in production" in err


def test_serve_refuses_plain_http_unless_in_development_mode(capsys, tmp_path):
    path = tmp_path / "prod.toml"
    path.write_text('version = 1\ndata_dir = "data"\n[server]\nsecret_key = "s3cret-enough"\n')
    code, _, err = run(capsys, "serve", "--insecure-http", "--config", str(path))
    assert code == 1 and "refusing to serve plain HTTP in production" in err


def test_bad_config_is_reported_without_traceback(capsys, tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text("version = 1\n[server]\nprot = 1\n")
    code, _, err = run(capsys, "gateway", "list", "--config", str(path))
    assert code == 1
    assert err == f"tandem-cloud: error: {path}:3: server.prot: unknown field\n"
