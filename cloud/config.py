"""Cloud service configuration: a TOML file read into frozen dataclasses.

    version = 1
    mode = "production"            # or "development"
    data_dir = "data"              # relative paths are relative to the file

    [server]    host, port, tls_cert, tls_key, trust_ca, secret_key
    [database]  url                # default sqlite:///<data_dir>/cloud.db
    [timeseries] backend           # "sqlite" (tables in the database above) or "influxdb"
                url, database, username, password   # InfluxDB v1 HTTP API (influxdb only)
                summary_retention_days, event_retention_days   # 0 = keep forever
                prune_interval_s   # how often `serve` prunes (0 = never; see `prune`)
    [ingest]    max_batch_bytes, replay_window_s, max_clock_skew_s
    [raw]       retention_days, request_timeout_s, max_open_per_device   # raw snippets on demand
    [security]  key_provider       # "local": data keys in key_file
                key_file           # default <data_dir>/keys/at-rest.keys, created mode 0600
                session_lifetime_s, token_max_days   # 0 = API tokens may never expire
                login_window_s, login_failures_per_source, login_failures_per_account
                refusal_interval_s # anonymous refusals: one audit row per source and interval

Every field may be overridden by TANDEM_CLOUD_<SECTION>_<FIELD> (top-level
fields by TANDEM_CLOUD_<FIELD>). Unknown keys and variables are errors, so a
typo cannot silently fall back to a default.
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

CONFIG_VERSION = 1
ENV_PREFIX = "TANDEM_CLOUD_"
ENV_CONFIG_FILE = "TANDEM_CLOUD_CONFIG"
DEFAULT_SECRET = "dev-insecure-secret"
MODES = ("production", "development")


class ConfigError(ValueError):
    """A configuration that cannot be used; the message names the source and field."""


@dataclass(frozen=True)
class ServerConfig:
    """Where and how the HTTP(S) server listens, and whom it trusts."""

    host: str = "127.0.0.1"
    port: int = 8443
    tls_cert: Path | None = None
    tls_key: Path | None = None
    trust_ca: Path | None = None
    secret_key: str = DEFAULT_SECRET


@dataclass(frozen=True)
class DatabaseConfig:
    """The relational database holding the registry (and the SQLite time series)."""

    url: str = ""


@dataclass(frozen=True)
class TimeSeriesConfig:
    """Which time-series store backs the measurements, and how long they are kept."""

    backend: str = "sqlite"
    url: str = "http://127.0.0.1:8086"
    database: str = "tandem"
    username: str = ""
    password: str = ""
    timeout_s: int = 10
    summary_retention_days: int = 0
    event_retention_days: int = 0
    prune_interval_s: int = 3600


@dataclass(frozen=True)
class IngestConfig:
    """Limits on uplink batches."""

    max_batch_bytes: int = 1 << 20
    replay_window_s: int = 30 * 24 * 3600
    max_clock_skew_s: int = 300


@dataclass(frozen=True)
class RawConfig:
    """Raw snippets fetched from the edge on request (cloud/raw/routes.py)."""

    retention_days: int = 7  # snippets and finished requests are pruned after this
    request_timeout_s: int = 600  # a request not answered by then has failed
    max_open_per_device: int = 4


@dataclass(frozen=True)
class SecurityConfig:
    """Keys for encryption at rest, browser sessions and API tokens (see cloud/access/auth.py)."""

    key_provider: str = "local"
    key_file: Path | None = None
    session_lifetime_s: int = 8 * 3600
    token_max_days: int = 365
    login_window_s: int = 300  # failed sign-ins are counted per source and account this long
    login_failures_per_source: int = 20
    login_failures_per_account: int = 10
    refusal_interval_s: int = 60


@dataclass(frozen=True)
class EnrolConfig:
    """Enrolment: which CA key certifies gateways' CSRs, and for how long (fleet/issuer.py)."""

    ca_cert: Path | None = None
    ca_key: Path | None = None
    ca_passphrase_env: str = ""
    cert_valid_days: int = 365
    token_ttl_s: int = 3600
    request_skew_s: int = 300


@dataclass(frozen=True)
class PolicyConfig:
    """The policy signing key and the data key gateways encrypt sealed fields to."""

    signing_key: Path | None = None
    passphrase_env: str = ""
    data_key: Path | None = None


@dataclass(frozen=True)
class CloudConfig:
    """The whole cloud configuration; `source` names where it came from, for errors."""

    version: int = CONFIG_VERSION
    mode: str = "production"
    data_dir: Path = Path("data")
    server: ServerConfig = field(default_factory=ServerConfig)
    database: DatabaseConfig = field(default_factory=DatabaseConfig)
    timeseries: TimeSeriesConfig = field(default_factory=TimeSeriesConfig)
    ingest: IngestConfig = field(default_factory=IngestConfig)
    security: SecurityConfig = field(default_factory=SecurityConfig)
    enrol: EnrolConfig = field(default_factory=EnrolConfig)
    policy: PolicyConfig = field(default_factory=PolicyConfig)
    raw: RawConfig = field(default_factory=RawConfig)
    source: str = field(default="<defaults>", compare=False)

    @property
    def production(self) -> bool:
        """True unless explicitly configured for development."""
        return self.mode == "production"

    def error(self, field_name: str, problem: str) -> ConfigError:
        """A ConfigError naming this config's source and the field at fault."""
        return ConfigError(f"{self.source}: {field_name}: {problem}")


_SECTIONS: dict[str, type[Any]] = {
    "server": ServerConfig, "database": DatabaseConfig,
    "timeseries": TimeSeriesConfig, "ingest": IngestConfig, "security": SecurityConfig,
    "enrol": EnrolConfig, "policy": PolicyConfig, "raw": RawConfig,
}
_TOP_LEVEL = ("version", "mode", "data_dir")


def load_config(path: str | Path | None = None,
                env: Mapping[str, str] | None = None) -> CloudConfig:
    """Read path (or only defaults when None), then apply environment overrides."""
    env = os.environ if env is None else env
    if path is None:
        return from_mapping({}, source="<defaults>", base=Path.cwd(), env=env)
    path = Path(path)
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror or exc}") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    return from_mapping(raw, source=str(path), base=path.resolve().parent, env=env)


def from_mapping(raw: Mapping[str, Any], source: str = "<mapping>", base: Path | None = None,
                 env: Mapping[str, str] | None = None) -> CloudConfig:
    """Validate a TOML-shaped mapping (plus optional env overrides) into a CloudConfig."""
    base = Path.cwd() if base is None else base
    copied = {k: dict(v) if isinstance(v, Mapping) else v for k, v in raw.items()}
    merged = _with_env(copied, env or {}, source)  # copies: overrides must not leak back
    unknown = set(merged) - set(_TOP_LEVEL) - set(_SECTIONS)
    if unknown:
        raise ConfigError(f"{source}: unknown key {sorted(unknown)[0]!r}")
    top = {k: _convert(source, k, merged[k], _hint(CloudConfig, k), base)
           for k in _TOP_LEVEL if k in merged}
    sections = {name: _section(source, name, cls, merged.get(name, {}), base)
                for name, cls in _SECTIONS.items()}
    top.setdefault("data_dir", base / "data")
    config = CloudConfig(**top, **sections, source=source)
    return _validated(_with_default_database(config))


def _section(source: str, name: str, cls: type[Any], raw: Any, base: Path) -> Any:
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{source}: [{name}] must be a table")
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = set(raw) - names
    if unknown:
        raise ConfigError(f"{source}: unknown key {name}.{sorted(unknown)[0]}")
    return cls(**{k: _convert(source, f"{name}.{k}", v, _hint(cls, k), base)
                  for k, v in raw.items()})


def _hint(cls: type[Any], name: str) -> Any:
    return typing.get_type_hints(cls)[name]


def _convert(source: str, where: str, value: Any, hint: Any, base: Path) -> Any:
    """Check value against the field's type; resolve paths against base."""
    optional = isinstance(hint, types.UnionType) and type(None) in typing.get_args(hint)
    kind = next(a for a in typing.get_args(hint) if a is not type(None)) if optional else hint
    if kind is Path and isinstance(value, str) and value:
        return base / value
    if (kind is int and type(value) is int) or (kind is str and isinstance(value, str)):
        return value
    raise ConfigError(f"{source}: {where}: expected {_type_name(kind)}, got {value!r}")


def _type_name(kind: Any) -> str:
    return {Path: "a non-empty path string", int: "an integer", str: "a string"}.get(kind, "?")


def _with_env(raw: dict[str, Any], env: Mapping[str, str], source: str) -> dict[str, Any]:
    """Overlay TANDEM_CLOUD_* variables onto the raw mapping, typed like the file's values."""
    targets: dict[str, tuple[str | None, str]] = {_env_name(None, k): (None, k)
                                                  for k in _TOP_LEVEL}
    targets |= {_env_name(s, f.name): (s, f.name)
                for s, cls in _SECTIONS.items() for f in dataclasses.fields(cls)}
    for var, text in env.items():
        if not var.startswith(ENV_PREFIX) or var == ENV_CONFIG_FILE:
            continue
        if var not in targets:
            raise ConfigError(f"{source}: unknown environment variable {var}")
        section, name = targets[var]
        cls = CloudConfig if section is None else _SECTIONS[section]
        value = _env_value(var, text, _hint(cls, name))
        table = raw if section is None else raw.setdefault(section, {})
        if not isinstance(table, dict):
            raise ConfigError(f"{source}: [{section}] must be a table")
        table[name] = value
    return raw


def _env_name(section: str | None, name: str) -> str:
    return ENV_PREFIX + (f"{section}_{name}" if section else name).upper()


def _env_value(var: str, text: str, hint: Any) -> Any:
    if hint is int:
        try:
            return int(text)
        except ValueError:
            raise ConfigError(f"environment: {var}: expected an integer, got {text!r}") from None
    if (hint is Path or Path in typing.get_args(hint)) and text:
        return str(Path(text).resolve())  # relative to the shell's directory, not the file's
    return text


def _with_default_database(config: CloudConfig) -> CloudConfig:
    if config.database.url:
        return config
    url = f"sqlite:///{config.data_dir / 'cloud.db'}"
    return dataclasses.replace(config, database=DatabaseConfig(url=url))


def _validated(config: CloudConfig) -> CloudConfig:
    """Range and consistency checks that types alone cannot express."""
    if config.version != CONFIG_VERSION:
        raise config.error("version", f"unsupported version {config.version} "
                                      f"(this service reads version {CONFIG_VERSION})")
    if config.mode not in MODES:
        raise config.error("mode", f"must be one of {', '.join(MODES)}, got {config.mode!r}")
    if not 0 <= config.server.port <= 65535:
        raise config.error("server.port", f"must be 0..65535, got {config.server.port}")
    if (config.server.tls_cert is None) != (config.server.tls_key is None):
        raise config.error("server.tls_key", "tls_cert and tls_key must be set together")
    if not config.server.secret_key:
        raise config.error("server.secret_key", "must not be empty")
    if config.ingest.max_batch_bytes < 64:
        raise config.error("ingest.max_batch_bytes", "must be at least 64")
    for name in ("replay_window_s", "max_clock_skew_s"):
        if getattr(config.ingest, name) < 0:
            raise config.error(f"ingest.{name}", "must not be negative")
    _validate_timeseries(config)
    _validate_security(config)
    for name in ("retention_days", "request_timeout_s", "max_open_per_device"):
        if getattr(config.raw, name) < 1:
            raise config.error(f"raw.{name}", "must be at least 1")
    if not 1 <= config.enrol.cert_valid_days <= 3650:
        raise config.error("enrol.cert_valid_days", "must be 1..3650")
    if (config.enrol.ca_cert is None) != (config.enrol.ca_key is None):
        raise config.error("enrol.ca_key", "ca_cert and ca_key must be set together")
    return config


def _validate_security(config: CloudConfig) -> None:
    security = config.security
    if security.session_lifetime_s < 60:
        raise config.error("security.session_lifetime_s", "must be at least 60")
    if security.token_max_days < 0:
        raise config.error("security.token_max_days", "must not be negative (0 = no limit)")
    for name in ("login_window_s", "login_failures_per_source", "login_failures_per_account",
                 "refusal_interval_s"):
        if getattr(security, name) < 1:
            raise config.error(f"security.{name}", "must be at least 1")


def _validate_timeseries(config: CloudConfig) -> None:
    ts = config.timeseries
    for name in ("summary_retention_days", "event_retention_days", "prune_interval_s"):
        if getattr(ts, name) < 0:
            raise config.error(f"timeseries.{name}", "must not be negative (0 = off)")
    if ts.backend != "influxdb":
        return
    if not ts.url.startswith(("http://", "https://")) or len(ts.url) < 10:
        raise config.error("timeseries.url", f"must be an http:// or https:// URL, got {ts.url!r}")
    if not ts.database or not ts.database.isprintable():
        raise config.error("timeseries.database", "must be a non-empty printable name")
    if ts.password and not ts.username:
        raise config.error("timeseries.username", "a password needs a username")
    if ts.timeout_s < 1:
        raise config.error("timeseries.timeout_s", "must be at least 1")
