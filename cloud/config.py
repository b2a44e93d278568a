"""Cloud service configuration: cloud.toml -> frozen, bounded dataclasses (tandem.wire.tomlconfig).

    version = 1
    mode = "production"            # or "development"
    data_dir = "data"              # relative paths are relative to the file

    [server] [database] [timeseries] [ingest] [raw] [security] [enrol] [policy] [tasks]

docs/examples/cloud.toml shows every field with a comment; docs/configuration.md
is generated from these types. Every field may be overridden by
TANDEM_CLOUD_<SECTION>_<FIELD> (top-level fields by TANDEM_CLOUD_<FIELD>).
Unknown keys and variables are errors, so a typo cannot silently fall back to
a default. Errors read `file:line: field: problem`.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field
from pydantic.dataclasses import dataclass

from tandem.wire.tomlconfig import (
    SECTION,
    ConfigError,
    Document,
    FieldError,
    FilePath,
    Float,
    Int,
    NotFlag,
    convert,
    line_of,
    read_toml,
    with_env,
)

__all__ = ["CONFIG_VERSION", "DEFAULT_SECRET", "ENV_CONFIG_FILE", "ENV_PREFIX", "CloudConfig",
           "ConfigError", "from_mapping", "load_config"]

CONFIG_VERSION: Literal[1] = 1
ENV_PREFIX = "TANDEM_CLOUD_"
ENV_CONFIG_FILE = "TANDEM_CLOUD_CONFIG"
DEFAULT_SECRET = "dev-insecure-secret"
MODES = ("production", "development")


# The decision engine's strategies (tandem.wire.scheduling.Strategy), spelled for validation.
StrategyName = Literal["all-edge", "all-cloud", "least-loaded", "deadline-cost"]


@dataclass(frozen=True, config=SECTION)
class ServerConfig:
    """Where and how the HTTP(S) server listens, and whom it trusts."""

    host: str = "127.0.0.1"
    port: Annotated[Int, Field(ge=0, le=65535)] = 8443
    tls_cert: FilePath | None = None
    tls_key: FilePath | None = None
    trust_ca: FilePath | None = None  # the site CA: gateways' client certificates
    secret_key: Annotated[str, Field(min_length=1)] = DEFAULT_SECRET  # signs browser sessions
    workers: Annotated[Int, Field(ge=1, le=64)] = 2  # processes; each opens its own database
    threads: Annotated[Int, Field(ge=1, le=256)] = 8  # requests served at once per process
    # open connections per process (the rest wait in the backlog)
    max_connections: Annotated[Int, Field(ge=2, le=100_000)] = 1000
    # TCP accepted -> TLS handshake done
    handshake_timeout_s: Annotated[Int, Field(ge=1, le=300)] = 5
    # handshake done (or connection idle) -> whole request head
    header_timeout_s: Annotated[Int, Field(ge=1, le=300)] = 10
    # longest wait for the next piece of a body, or to send a reply
    body_timeout_s: Annotated[Int, Field(ge=1, le=3600)] = 30

    def __post_init__(self) -> None:
        if (self.tls_cert is None) != (self.tls_key is None):
            raise FieldError("tls_key", "tls_cert and tls_key must be set together")


@dataclass(frozen=True, config=SECTION)
class DatabaseConfig:
    """The relational database holding the registry (and the SQLite time series)."""

    url: str = ""  # default sqlite:///<data_dir>/cloud.db


@dataclass(frozen=True, config=SECTION)
class TimeSeriesConfig:
    """Which time-series store backs the measurements, and how long they are kept."""

    backend: str = "sqlite"  # sqlite (tables in the database) | influxdb (v1 HTTP API)
    url: str = "http://127.0.0.1:8086"
    database: str = "tandem"
    username: str = ""
    password: str = ""
    timeout_s: Annotated[Int, Field(ge=1, le=600)] = 10
    summary_retention_days: Annotated[Int, Field(ge=0, le=36_500)] = 0  # 0 = keep forever
    event_retention_days: Annotated[Int, Field(ge=0, le=36_500)] = 0  # 0 = keep forever
    prune_interval_s: Annotated[Int, Field(ge=0, le=30 * 86_400)] = 3600  # 0: never (`prune`)

    def __post_init__(self) -> None:
        if self.backend != "influxdb":
            return
        if not self.url.startswith(("http://", "https://")) or len(self.url) < 10:
            raise FieldError("url", f"must be an http:// or https:// URL, got {self.url!r}")
        if not self.database or not self.database.isprintable():
            raise FieldError("database", "must be a non-empty printable name")
        if self.password and not self.username:
            raise FieldError("username", "a password needs a username")


@dataclass(frozen=True, config=SECTION)
class IngestConfig:
    """Limits on uplink batches."""

    max_batch_bytes: Annotated[Int, Field(ge=64, le=1 << 30)] = 1 << 20
    replay_window_s: Annotated[Int, Field(ge=0)] = 30 * 24 * 3600
    max_clock_skew_s: Annotated[Int, Field(ge=0)] = 300


@dataclass(frozen=True, config=SECTION)
class RawConfig:
    """Raw snippets fetched from the edge on request (cloud/raw/routes.py)."""

    retention_days: Annotated[Int, Field(ge=1)] = 7  # snippets, finished requests pruned then
    request_timeout_s: Annotated[Int, Field(ge=1)] = 600  # unanswered by then: failed
    max_open_per_device: Annotated[Int, Field(ge=1, le=1000)] = 4


@dataclass(frozen=True, config=SECTION)
class SchedulingConfig:
    """Edge-cloud scheduling: gateway status reports, each site's strategy (cloud/scheduling/)."""

    # A gateway whose last status report is this many of its report intervals old is unreachable.
    unreachable_after: Annotated[Int, Field(ge=1, le=1000)] = 3
    strategy: StrategyName = "deadline-cost"  # for sites not named in `sites`
    sites: dict[str, StrategyName] = dataclasses.field(default_factory=dict)  # site -> strategy
    # Placement and migration (cloud/scheduling/placement.py, wire/scheduling.py Tuning):
    # a gateway whose queue needs longer than overload_wait_s sheds queued migratable tasks
    # to the cloud or to a peer whose queue drains within idle_wait_s.
    overload_wait_s: Annotated[Float, Field(gt=0, le=86_400)] = 30.0
    idle_wait_s: Annotated[Float, Field(ge=0, le=86_400)] = 2.0
    # A gateway renews its tasks' leases with every claim poll; one silent this long loses them.
    edge_lease_s: Annotated[Float, Field(ge=0.5, le=86_400)] = 30.0
    max_claim: Annotated[Int, Field(ge=1, le=256)] = 8  # tasks handed to a gateway per poll
    # A queued cloud task this light (score-s) may be pushed down to a spare gateway (0: never).
    light_compute: Annotated[Float, Field(ge=0, le=1e9)] = 5.0
    # Worker processes of every `tandem-cloud worker` together (0: one machine's [tasks] workers).
    cloud_workers: Annotated[Int, Field(ge=0, le=100_000)] = 0


@dataclass(frozen=True, config=SECTION)
class SecurityConfig:
    """Keys for encryption at rest, browser sessions and API tokens (see cloud/access/auth.py)."""

    key_provider: str = "local"  # local: data keys in key_file
    key_file: FilePath | None = None  # default <data_dir>/keys/at-rest.keys, created mode 0600
    session_lifetime_s: Annotated[Int, Field(ge=60)] = 8 * 3600
    token_max_days: Annotated[Int, Field(ge=0)] = 365  # 0 = API tokens may never expire
    # failed sign-ins are counted per source and account this long
    login_window_s: Annotated[Int, Field(ge=1)] = 300
    login_failures_per_source: Annotated[Int, Field(ge=1)] = 20
    login_failures_per_account: Annotated[Int, Field(ge=1)] = 10
    # anonymous refusals: one audit row per source and interval
    refusal_interval_s: Annotated[Int, Field(ge=1)] = 60


@dataclass(frozen=True, config=SECTION)
class EnrolConfig:
    """Enrolment: which CA key certifies gateways' CSRs, and for how long (fleet/issuer.py)."""

    ca_cert: FilePath | None = None
    ca_key: FilePath | None = None
    ca_passphrase_env: str = ""
    cert_valid_days: Annotated[Int, Field(ge=1, le=3650)] = 365
    token_ttl_s: Annotated[Int, Field(ge=1)] = 3600
    request_skew_s: Annotated[Int, Field(ge=0)] = 300

    def __post_init__(self) -> None:
        if (self.ca_cert is None) != (self.ca_key is None):
            raise FieldError("ca_key", "ca_cert and ca_key must be set together")


@dataclass(frozen=True, config=SECTION)
class PolicyConfig:
    """The policy signing key and the data key gateways encrypt sealed fields to."""

    signing_key: FilePath | None = None
    passphrase_env: str = ""
    data_key: FilePath | None = None


@dataclass(frozen=True, config=SECTION)
class TasksConfig:
    """The task queue (cloud/tasks/queue.py): huey on SQLite by default, Redis for many machines."""

    backend: Literal["sqlite", "redis"] = "sqlite"
    sqlite_file: FilePath | None = None  # default <data_dir>/task-queue.db
    redis_url: str = "redis://127.0.0.1:6379/0"
    workers: Annotated[Int, Field(ge=1, le=64)] = 2  # processes per `tandem-cloud worker`
    lease_s: Annotated[Int, Field(ge=1, le=86_400)] = 300  # not renewed this long: task reruns
    reap_interval_s: Annotated[Int, Field(ge=1, le=3600)] = 5  # how often leases are checked
    retries: Annotated[Int, Field(ge=0, le=100)] = 2  # huey retries of a task that raised

    def __post_init__(self) -> None:
        if self.backend == "redis" and not self.redis_url.startswith(("redis://", "rediss://")):
            raise FieldError("redis_url", f"must be a redis:// URL, got {self.redis_url!r}")


@dataclass(frozen=True, config=SECTION)
class CloudConfig:
    """The whole cloud configuration; `source` names where it came from, for errors."""

    version: Annotated[Literal[1], NotFlag] = CONFIG_VERSION
    mode: Literal["production", "development"] = "production"
    data_dir: FilePath = Path("data")
    server: ServerConfig = dataclasses.field(default_factory=ServerConfig)
    database: DatabaseConfig = dataclasses.field(default_factory=DatabaseConfig)
    timeseries: TimeSeriesConfig = dataclasses.field(default_factory=TimeSeriesConfig)
    ingest: IngestConfig = dataclasses.field(default_factory=IngestConfig)
    security: SecurityConfig = dataclasses.field(default_factory=SecurityConfig)
    enrol: EnrolConfig = dataclasses.field(default_factory=EnrolConfig)
    policy: PolicyConfig = dataclasses.field(default_factory=PolicyConfig)
    raw: RawConfig = dataclasses.field(default_factory=RawConfig)
    scheduling: SchedulingConfig = dataclasses.field(default_factory=SchedulingConfig)
    tasks: TasksConfig = dataclasses.field(default_factory=TasksConfig)
    source: str = dataclasses.field(default="<defaults>", compare=False, init=False)

    @property
    def production(self) -> bool:
        """True unless explicitly configured for development."""
        return self.mode == "production"

    def error(self, field_name: str, problem: str) -> ConfigError:
        """A ConfigError naming this config's source, the field's line in it, and the field."""
        try:
            line = line_of(Path(self.source).read_text(encoding="utf-8"), field_name)
        except (OSError, UnicodeDecodeError):
            line = None
        where = f"{self.source}:{line}" if line else self.source
        return ConfigError(f"{where}: {field_name}: {problem}", field_name)


def load_config(path: str | Path | None = None,
                env: Mapping[str, str] | None = None) -> CloudConfig:
    """Read path (or only defaults when None), then apply environment overrides."""
    env = os.environ if env is None else env
    if path is None:
        return from_mapping({}, source="<defaults>", base=Path.cwd(), env=env)
    return _build(read_toml(Path(path)), env)


def from_mapping(raw: Mapping[str, Any], source: str = "<mapping>", base: Path | None = None,
                 env: Mapping[str, str] | None = None) -> CloudConfig:
    """Validate a TOML-shaped mapping (plus optional env overrides) into a CloudConfig."""
    base = Path.cwd() if base is None else base
    return _build(Document(source, "", dict(raw), base.resolve()), env or {})


def _build(doc: Document, env: Mapping[str, str]) -> CloudConfig:
    doc = with_env(doc, CloudConfig, ENV_PREFIX, env, ignore=(ENV_CONFIG_FILE,))
    config = convert(CloudConfig, _with_defaults(doc))
    object.__setattr__(config, "source", doc.source)  # not a TOML key, so set after validation
    return config


def _with_defaults(doc: Document) -> Document:
    """data_dir defaults to <file's folder>/data; the database to SQLite inside it."""
    data = dict(doc.data)
    data.setdefault("data_dir", "data")
    database = data.get("database", {})
    if isinstance(database, Mapping) and not database.get("url"):
        data_dir = data["data_dir"]
        folder = (doc.base / data_dir).resolve() if isinstance(data_dir, str | Path) else None
        if folder is not None:
            data["database"] = {**database, "url": f"sqlite:///{folder / 'cloud.db'}"}
    return dataclasses.replace(doc, data=data)
