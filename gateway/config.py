"""Gateway configuration: gateway.toml -> frozen, bounded dataclasses (tandem.wire.tomlconfig).

Every error reads `file:line: field: problem`, e.g.
`gateway.toml:10: coap.port: input should be less than or equal to 65535, got 70000`.
Environment variables `TANDEM_GW_<SECTION>_<FIELD>` override file values
(e.g. TANDEM_GW_UPLINK_URL) so containers and the demo need no file edits.
Sections owned by a package live there: [coap] in gateway/access/config.py,
[[modbus.bus]] in gateway/modbus/config.py. docs/examples/gateway.toml shows
every field; docs/configuration.md is generated from these types.
"""

from __future__ import annotations

import dataclasses
import os
import typing
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field
from pydantic.dataclasses import dataclass

from tandem.gateway.access.config import CoapSection, DeviceGrant
from tandem.gateway.installer.config import InstallerSection
from tandem.gateway.modbus.config import ModbusSection
from tandem.wire.tomlconfig import (
    SECTION,
    ConfigError,
    Document,
    FilePath,
    Flag,
    Float,
    Int,
    NotFlag,
    convert,
    read_toml,
    with_env,
)

__all__ = ["CONFIG_VERSION", "ENV_PREFIX", "CoapSection", "ConfigError", "DeviceGrant",
           "GatewayConfig", "load_config", "parse_config"]

CONFIG_VERSION = 1
ENV_PREFIX = "TANDEM_GW_"


@dataclass(frozen=True, config=SECTION)
class GatewaySection:
    """Who this gateway is and where it keeps state."""

    id: Annotated[str, Field(min_length=1, max_length=64)]
    data_dir: FilePath = Path("/var/lib/tandem-gateway")


@dataclass(frozen=True, config=SECTION)
class IdentitySection:
    """The gateway's certificate, key store and the site CA.

    keystore "file": `key` is the identity key (PEM, optionally encrypted with
    the passphrase from `passphrase_env` or `passphrase_file`). keystore "tpm":
    the identity key lives in the TPM at `tcti`, its blob in `state_dir`
    (default <data_dir>/keystore); `key` then serves only the DTLS endpoint.
    """

    cert: FilePath
    key: FilePath
    ca: FilePath
    keystore: str = "file"  # file | tpm
    tcti: str = "device:/dev/tpmrm0"
    state_dir: FilePath | None = None
    passphrase_env: str = ""
    passphrase_file: FilePath | None = None


@dataclass(frozen=True, config=SECTION)
class PipelineSection:
    """Windowing of readings into summaries."""

    window_s: Annotated[Float, Field(ge=0.1, le=86_400)] = 10.0
    max_pending: Annotated[Int, Field(ge=1, le=10_000_000)] = 10_000


@dataclass(frozen=True, config=SECTION)
class UplinkSection:
    """Where and how batches go to the cloud."""

    url: str = ""
    ca: FilePath | None = None
    batch_max_records: Annotated[Int, Field(ge=1, le=10_000)] = 500
    interval_s: Annotated[Float, Field(ge=0.01, le=3600)] = 2.0
    timeout_s: Annotated[Float, Field(ge=0.1, le=600)] = 10.0
    backoff_max_s: Annotated[Float, Field(ge=0.1, le=86_400)] = 60.0
    # while the cloud is unreachable: a TCP probe this often (0: none)
    probe_s: Annotated[Float, Field(ge=0, le=3600)] = 1.0
    compress: Flag = True
    daily_budget_bytes: Annotated[Int, Field(ge=0, le=1 << 50)] = 0  # 0: no budget


@dataclass(frozen=True, config=SECTION)
class OutboxSection:
    """Limits of the durable store-and-forward queue."""

    max_records: Annotated[Int, Field(ge=100, le=1_000_000_000)] = 1_000_000


@dataclass(frozen=True, config=SECTION)
class MetricsSection:
    """The Prometheus endpoint (port 0 disables it)."""

    host: str = "127.0.0.1"
    port: Annotated[Int, Field(ge=0, le=65535)] = 9464


@dataclass(frozen=True, config=SECTION)
class SupervisorSection:
    """Restarts of the gateway's long-running tasks (gateway/supervisor.py)."""

    backoff_s: Annotated[Float, Field(ge=0.01, le=3600)] = 0.5
    backoff_max_s: Annotated[Float, Field(ge=0.01, le=86_400)] = 30.0
    # more restarts than this within budget_window_s: exit non-zero
    restart_budget: Annotated[Int, Field(ge=0, le=1_000_000)] = 10
    budget_window_s: Annotated[Float, Field(ge=1, le=7 * 86_400)] = 600.0


@dataclass(frozen=True, config=SECTION)
class RulesSection:
    """The local rules file (features, rules, actions), reloaded when it changes."""

    file: FilePath | None = None
    poll_s: Annotated[Float, Field(ge=0.05, le=3600)] = 1.0


@dataclass(frozen=True, config=SECTION)
class InferenceSection:
    """The optional .tflite model scoring `channel`'s band energies every `hop` samples."""

    model: FilePath | None = None
    channel: str = "vib"
    hop: Annotated[Int, Field(ge=1, le=65_536)] = 16
    poll_s: Annotated[Float, Field(ge=0.05, le=3600)] = 5.0


@dataclass(frozen=True, config=SECTION)
class PolicySection:
    """The signed security policy: fetched from `url` (default uplink.url) every `poll_s`.

    The keys trusted for it default to those received at enrolment
    (<data_dir>/enrolment/policy-key.pem and data-key.pem).
    """

    url: str = ""
    poll_s: Annotated[Float, Field(ge=0.05, le=86_400)] = 30.0
    trust_key: FilePath | None = None
    data_key: FilePath | None = None


@dataclass(frozen=True, config=SECTION)
class ModelsSection:
    """Model releases from the cloud (needs enrolment and an [inference] model slot).

    The group's signed release is polled every `poll_s`; artefacts download at
    most `rate_bytes_s` on average (bursts of `burst_bytes`), resumably.
    """

    enabled: bool = True
    poll_s: Annotated[Float, Field(ge=0.05, le=86_400)] = 60.0
    rate_bytes_s: Annotated[Int, Field(ge=1024, le=1 << 40)] = 256 * 1024
    burst_bytes: Annotated[Int, Field(ge=1024, le=1 << 40)] = 64 * 1024


@dataclass(frozen=True, config=SECTION)
class StatusSection:
    """Status reports to the cloud's scheduler (gateway/cloudlink/statusreport.py).

    Every `interval_s` the gateway posts its load, memory, task queue, outbox depth
    and link quality, with its resources (cores, compute score measured at start
    over `score_rounds` rounds, memory, free storage). `site` groups gateways that
    may run each other's site-private tasks (default: the gateway's own id).
    `bandwidth_bps` is the uplink's bytes/s as last measured by the installer.
    """

    interval_s: Annotated[Float, Field(ge=0.5, le=3600)] = 5.0
    site: str = ""
    score_rounds: Annotated[Int, Field(ge=1, le=1000)] = 20
    bandwidth_bps: Annotated[Float, Field(gt=0)] = 1.25e6
    accelerators: tuple[str, ...] = ()


@dataclass(frozen=True, config=SECTION)
class LiveSection:
    """The live lane to the cloud (gateway/cloudlink/livelane.py): newest values of watched devices.

    The watched set is asked for every `watch_poll_s` (and comes back with every post);
    while devices are watched, their changed values are posted at most every
    `interval_s`, at most `max_devices` devices and `max_channels` channels each,
    with `timeout_s` per post. Lossy by design: live values are not the record.
    """

    enabled: bool = True
    interval_s: Annotated[Float, Field(ge=0.05, le=60)] = 0.25
    watch_poll_s: Annotated[Float, Field(ge=0.1, le=3600)] = 2.0
    max_devices: Annotated[Int, Field(ge=1, le=10_000)] = 100
    max_channels: Annotated[Int, Field(ge=1, le=1024)] = 64
    timeout_s: Annotated[Float, Field(ge=0.1, le=60)] = 2.0


@dataclass(frozen=True, config=SECTION)
class TasksSection:
    """Tasks the cloud's scheduler places here (gateway/tasks/agent.py, gateway/tasks/pool.py).

    With a cloud URL and `enabled`, `workers` idle-priority processes run the tasks;
    every `poll_s` (and whenever a task finishes) the gateway claims as many as it
    has free workers, renews the leases of those it runs and reports results.
    A worker that dies mid-task is replaced and the task run again up to `attempts`.
    """

    enabled: bool = True
    workers: Annotated[Int, Field(ge=1, le=64)] = 1
    attempts: Annotated[Int, Field(ge=1, le=10)] = 2
    poll_s: Annotated[Float, Field(ge=0.05, le=3600)] = 2.0
    unreported: Annotated[Int, Field(ge=1, le=100_000)] = 256  # results kept until delivered


@dataclass(frozen=True, config=SECTION)
class RawCacheSection:
    """Raw snippets nodes upload (POST /raw): cached here, sent to the cloud only on request.

    The cache holds at most `max_bytes` and `max_snippets` (oldest evicted) for
    `ttl_s`; a node may start `per_device_per_min` transfers a minute. The cloud's
    requests are polled every `request_poll_s`; a snippet the node is asked to
    take is awaited `request_wait_s`; a request matches a cached window within `match_ms`.
    """

    ttl_s: Annotated[Float, Field(ge=1, le=30 * 86_400)] = 3600.0
    max_bytes: Annotated[Int, Field(ge=0, le=1 << 40)] = 16 << 20
    max_snippets: Annotated[Int, Field(ge=0, le=10_000_000)] = 1000
    purge_s: Annotated[Float, Field(ge=0.05, le=86_400)] = 60.0
    per_device_per_min: Annotated[Int, Field(ge=1, le=10_000)] = 6
    match_ms: Annotated[Int, Field(ge=0, le=86_400_000)] = 2000
    request_poll_s: Annotated[Float, Field(ge=0.05, le=86_400)] = 5.0
    request_wait_s: Annotated[Float, Field(ge=0.1, le=86_400)] = 60.0


@dataclass(frozen=True, config=SECTION)
class CommandsSection:
    """Commands for nodes, fetched by their polls of GET /c (docs/protocol.md section 3).

    At most `queue` commands wait per node; a sender waits `ack_timeout_s` for the
    node to confirm one; a node that polled within `reachable_s` counts as connected.
    """

    queue: Annotated[Int, Field(ge=1, le=1024)] = 16
    ack_timeout_s: Annotated[Float, Field(ge=0.1, le=3600)] = 30.0
    reachable_s: Annotated[Float, Field(ge=0.1, le=86_400)] = 60.0


@dataclass(frozen=True, config=SECTION)
class GatewayConfig:
    """The whole gateway configuration."""

    version: Annotated[Literal[1], NotFlag]
    gateway: GatewaySection
    identity: IdentitySection
    coap: CoapSection = dataclasses.field(default_factory=CoapSection)
    pipeline: PipelineSection = dataclasses.field(default_factory=PipelineSection)
    outbox: OutboxSection = dataclasses.field(default_factory=OutboxSection)
    uplink: UplinkSection = dataclasses.field(default_factory=UplinkSection)
    metrics: MetricsSection = dataclasses.field(default_factory=MetricsSection)
    supervisor: SupervisorSection = dataclasses.field(default_factory=SupervisorSection)
    rules: RulesSection = dataclasses.field(default_factory=RulesSection)
    inference: InferenceSection = dataclasses.field(default_factory=InferenceSection)
    modbus: ModbusSection = dataclasses.field(default_factory=ModbusSection)
    policy: PolicySection = dataclasses.field(default_factory=PolicySection)
    models: ModelsSection = dataclasses.field(default_factory=ModelsSection)
    rawcache: RawCacheSection = dataclasses.field(default_factory=RawCacheSection)
    commands: CommandsSection = dataclasses.field(default_factory=CommandsSection)
    status: StatusSection = dataclasses.field(default_factory=StatusSection)
    live: LiveSection = dataclasses.field(default_factory=LiveSection)
    tasks: TasksSection = dataclasses.field(default_factory=TasksSection)
    installer: InstallerSection = dataclasses.field(default_factory=InstallerSection)


def load_config(path: Path, environ: typing.Mapping[str, str] | None = None) -> GatewayConfig:
    """Read, override from the environment, validate; relative paths resolve against the file."""
    doc = read_toml(path)
    doc = with_env(doc, GatewayConfig, ENV_PREFIX, os.environ if environ is None else environ)
    return convert(GatewayConfig, doc)


def parse_config(data: dict[str, Any], source: str = "<config>",
                 base: Path = Path(".")) -> GatewayConfig:
    """Validate an already-parsed TOML document (no environment, no line numbers)."""
    return convert(GatewayConfig, Document(source, "", data, base.resolve()))
