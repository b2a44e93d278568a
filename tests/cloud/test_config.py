"""Config: TOML into frozen dataclasses, env overrides, errors that name the file and field."""

from __future__ import annotations

import dataclasses
import tomllib
from pathlib import Path

import pytest

from tandem.cloud import close_app, create_app
from tandem.cloud.config import DEFAULT_SECRET, ConfigError, from_mapping, load_config

FULL = """
version = 1
mode = "development"
data_dir = "state"

[server]
host = "0.0.0.0"
port = 9443
tls_cert = "pki/server/cert.pem"
tls_key = "pki/server/key.pem"
trust_ca = "pki/ca.pem"
secret_key = "s3cret"

[database]
url = "postgresql://tandem@db/tandem"

[timeseries]
backend = "sqlite"

[ingest]
max_batch_bytes = 65536
replay_window_s = 3600
max_clock_skew_s = 10
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "cloud.toml"
    path.write_text(text)
    return path


def test_full_file_is_read_with_paths_relative_to_it(tmp_path):
    config = load_config(write(tmp_path, FULL), env={})
    assert config.mode == "development"
    assert config.data_dir == tmp_path / "state"
    assert (config.server.host, config.server.port) == ("0.0.0.0", 9443)
    assert config.server.tls_cert == tmp_path / "pki/server/cert.pem"
    assert config.server.trust_ca == tmp_path / "pki/ca.pem"
    assert config.database.url == "postgresql://tandem@db/tandem"
    assert (config.ingest.max_batch_bytes, config.ingest.replay_window_s,
            config.ingest.max_clock_skew_s) == (65536, 3600, 10)
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.mode = "production"  # type: ignore[misc]


def test_defaults_put_sqlite_under_the_data_dir(tmp_path):
    config = load_config(write(tmp_path, "version = 1\n"), env={})
    assert config.production
    assert config.server.secret_key == DEFAULT_SECRET
    assert config.database.url == f"sqlite:///{tmp_path / 'data' / 'cloud.db'}"
    assert config.timeseries.backend == "sqlite"


def test_environment_overrides_the_file(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    env = {"TANDEM_CLOUD_SERVER_PORT": "8000", "TANDEM_CLOUD_MODE": "development",
           "TANDEM_CLOUD_SERVER_TLS_CERT": "elsewhere/c.pem",
           "TANDEM_CLOUD_SERVER_TLS_KEY": "/abs/k.pem",
           "TANDEM_CLOUD_CONFIG": "ignored: names the file, not a field"}
    config = load_config(write(tmp_path, FULL), env=env)
    assert config.server.port == 8000
    assert config.server.tls_cert == tmp_path / "elsewhere/c.pem"
    assert config.server.tls_key == Path("/abs/k.pem")


@pytest.mark.parametrize(("text", "message"), [
    ("version = 2\n", "cloud.toml:1: version: expected 1, got 2"),
    ("version = 1\ncolour = 'red'\n", "cloud.toml:2: colour: unknown field"),
    ("version = 1\n[server]\nprot = 1\n", "cloud.toml:3: server.prot: unknown field"),
    ("version = 1\n[server]\nport = '8443'\n",
     "cloud.toml:3: server.port: expected a valid integer, got '8443'"),
    ("version = 1\n[server]\nport = 70000\n",
     "cloud.toml:3: server.port: expected less than or equal to 65535, got 70000"),
    ("version = 1\n[server]\nport = true\n", "cloud.toml:3: server.port: expected a valid integer"),
    ("version = 1\nmode = 'prod'\n",
     "cloud.toml:2: mode: expected 'production' or 'development', got 'prod'"),
    ("version = 1\n[server]\ntls_cert = 'c.pem'\n",
     "cloud.toml:2: server.tls_key: tls_cert and tls_key"),
    ("version = 1\n[ingest]\nmax_batch_bytes = 10\n", "ingest.max_batch_bytes"),
    ("version = 1\n[ingest]\nreplay_window_s = -1\n", "ingest.replay_window_s"),
    ("version = 1\nserver = 3\n", "cloud.toml:2: server: expected a table, got 3"),
    ("version = 1\n[server\n", "not valid TOML"),
    ("version = 1\n[timeseries]\nbackend = 'influxdb'\nurl = 'localhost:8086'\n",
     "cloud.toml:4: timeseries.url: must be an http:// or https:// URL"),
    ("version = 1\n[timeseries]\nbackend = 'influxdb'\ndatabase = ''\n",
     "cloud.toml:4: timeseries.database: must be a non-empty"),
    ("version = 1\n[timeseries]\nbackend = 'influxdb'\npassword = 'x'\n",
     "cloud.toml:2: timeseries.username: a password needs a username"),
    ("version = 1\n[timeseries]\nsummary_retention_days = -1\n",
     "cloud.toml:3: timeseries.summary_retention_days: expected greater than or equal to 0"),
    ("version = 1\n[timeseries]\nprune_interval_s = '1h'\n",
     "cloud.toml:3: timeseries.prune_interval_s: expected a valid integer"),
    ("version = 1\n[security]\nsession_lifetime_s = 5\n",
     "cloud.toml:3: security.session_lifetime_s: expected greater than or equal to 60"),
    ("version = 1\n[security]\ntoken_max_days = -1\n",
     "cloud.toml:3: security.token_max_days: expected greater than or equal to 0"),
])
def test_errors_name_the_file_and_field(tmp_path, text, message):
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as caught:
        load_config(path, env={})
    assert str(caught.value).startswith(str(path))
    assert message in str(caught.value)


def test_influxdb_settings_are_read_and_the_password_can_come_from_the_environment(tmp_path):
    path = write(tmp_path, 'version = 1\n[timeseries]\nbackend = "influxdb"\n'
                           'url = "https://influx.example:8086"\ndatabase = "plant"\n'
                           'username = "tandem"\nsummary_retention_days = 365\n'
                           'event_retention_days = 730\nprune_interval_s = 600\n')
    ts = load_config(path, env={"TANDEM_CLOUD_TIMESERIES_PASSWORD": "from-env"}).timeseries
    assert (ts.backend, ts.url, ts.database, ts.username, ts.password) == (
        "influxdb", "https://influx.example:8086", "plant", "tandem", "from-env")
    assert (ts.summary_retention_days, ts.event_retention_days, ts.prune_interval_s) == (
        365, 730, 600)


def test_unknown_environment_variable_is_an_error(tmp_path):
    with pytest.raises(ConfigError, match="TANDEM_CLOUD_SERVER_PROT"):
        load_config(write(tmp_path, "version = 1\n"), env={"TANDEM_CLOUD_SERVER_PROT": "1"})


def test_bad_environment_integer_names_the_variable(tmp_path):
    with pytest.raises(ConfigError, match="TANDEM_CLOUD_SERVER_PORT"):
        load_config(write(tmp_path, "version = 1\n"), env={"TANDEM_CLOUD_SERVER_PORT": "x"})


def test_missing_file_is_a_readable_error(tmp_path):
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "absent.toml", env={})


def test_production_with_the_default_secret_refuses_to_start(tmp_path):
    with pytest.raises(ConfigError, match=r"server\.secret_key: refusing to run in production"):
        create_app({"data_dir": str(tmp_path)})


def test_production_with_a_secret_starts(tmp_path):
    app = create_app({"data_dir": str(tmp_path), "server": {"secret_key": "not-the-default"}})
    close_app(app)


def test_unknown_timeseries_backend_is_named(tmp_path):
    with pytest.raises(ConfigError, match=r"timeseries\.backend: unknown backend 'influx'"):
        create_app({"mode": "development", "data_dir": str(tmp_path),
                    "timeseries": {"backend": "influx"}})


def test_mapping_and_dataclass_give_the_same_config(tmp_path):
    raw = {"mode": "development", "data_dir": str(tmp_path), "server": {"port": 9000}}
    given = from_mapping(raw)
    app = create_app(given)
    try:
        assert app.config["TANDEM"] is given
    finally:
        close_app(app)
    app = create_app(raw)
    try:
        built = app.config["TANDEM"]
    finally:
        close_app(app)
    assert built is not given and built == given
    assert (built.server.port, built.data_dir) == (9000, tmp_path)
    assert built != from_mapping({**raw, "server": {"port": 9001}})


def test_a_mapping_equals_the_same_settings_read_from_a_file(tmp_path):
    from_file = load_config(write(tmp_path, FULL), env={})
    assert from_mapping(tomllib.loads(FULL), base=tmp_path) == from_file
    assert from_mapping({**tomllib.loads(FULL), "mode": "production"}, base=tmp_path) != from_file
