"""Gateway configuration: TOML -> frozen dataclasses, validated, with env overrides.

Every error names the file and the dotted field, e.g.
`gateway.toml: coap.port: expected an integer in 0..65535, got "x"`.
Environment variables `TANDEM_GW_<SECTION>_<FIELD>` override file values
(e.g. TANDEM_GW_UPLINK_URL) so containers and the demo need no file edits.
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tandem.gateway.modbus.config import ModbusConfigError, ModbusSection

CONFIG_VERSION = 1
ENV_PREFIX = "TANDEM_GW_"


class ConfigError(Exception):
    """A configuration that cannot be used; the message names file, line and field."""

    def __init__(self, message: str, field: str = "") -> None:
        super().__init__(message)
        self.field = field


@dataclass(frozen=True)
class GatewaySection:
    """Who this gateway is and where it keeps state."""

    id: str
    data_dir: Path = Path("/var/lib/tandem-gateway")


@dataclass(frozen=True)
class IdentitySection:
    """The gateway's certificate, key store and the site CA.

    keystore "file": `key` is the identity key (PEM, optionally encrypted with
    the passphrase from `passphrase_env` or `passphrase_file`). keystore "tpm":
    the identity key lives in the TPM at `tcti`, its blob in `state_dir`
    (default <data_dir>/keystore); `key` then serves only the DTLS endpoint.
    """

    cert: Path
    key: Path
    ca: Path
    keystore: str = "file"
    tcti: str = "device:/dev/tpmrm0"
    state_dir: Path | None = None
    passphrase_env: str = ""
    passphrase_file: Path | None = None


@dataclass(frozen=True)
class DeviceGrant:
    """The CoAP paths one device may use (`[[coap.grant]]`); devices without a grant may use all."""

    device: str
    paths: tuple[str, ...] = ("/r",)


@dataclass(frozen=True)
class CoapSection:
    """The CoAP/DTLS device-access endpoint."""

    host: str = "0.0.0.0"
    port: int = 5684
    max_peers: int = 1024
    idle_timeout_s: float = 120.0
    handshake_timeout_s: float = 10.0
    max_handshakes: int = 64  # half-open DTLS handshakes (gateway/access/admission.py)
    new_source_rate: float = 50.0  # handshakes/s from source IPs not seen authenticated
    allowed_devices: tuple[str, ...] = ()
    insecure_plain_coap: bool = False
    revocation_file: Path | None = None  # device names, one a line; reloaded on change
    grant: tuple[DeviceGrant, ...] = ()


@dataclass(frozen=True)
class PipelineSection:
    """Windowing of readings into summaries."""

    window_s: float = 10.0
    max_pending: int = 10_000


@dataclass(frozen=True)
class UplinkSection:
    """Where and how batches go to the cloud."""

    url: str = ""
    ca: Path | None = None
    batch_max_records: int = 500
    interval_s: float = 2.0
    timeout_s: float = 10.0
    backoff_max_s: float = 60.0
    compress: bool = True
    daily_budget_bytes: int = 0


@dataclass(frozen=True)
class OutboxSection:
    """Limits of the durable store-and-forward queue."""

    max_records: int = 1_000_000


@dataclass(frozen=True)
class MetricsSection:
    """The Prometheus endpoint (port 0 disables it)."""

    host: str = "127.0.0.1"
    port: int = 9464


@dataclass(frozen=True)
class RulesSection:
    """The local rules file (features, rules, actions), reloaded when it changes."""

    file: Path | None = None
    poll_s: float = 1.0


@dataclass(frozen=True)
class InferenceSection:
    """The optional .tflite model scoring `channel`'s band energies every `hop` samples."""

    model: Path | None = None
    channel: str = "vib"
    hop: int = 16
    poll_s: float = 5.0


@dataclass(frozen=True)
class PolicySection:
    """The signed security policy: fetched from `url` (default uplink.url) every `poll_s`.

    The keys trusted for it default to those received at enrolment
    (<data_dir>/enrolment/policy-key.pem and data-key.pem).
    """

    url: str = ""
    poll_s: float = 30.0
    trust_key: Path | None = None
    data_key: Path | None = None


@dataclass(frozen=True)
class RawCacheSection:
    """Raw snippets nodes upload (POST /raw): cached here, sent to the cloud only on request.

    The cache holds at most `max_bytes` and `max_snippets` (oldest evicted) for
    `ttl_s`; a node may start `per_device_per_min` transfers a minute. The cloud's
    requests are polled every `request_poll_s`; a snippet the node is asked to
    take is awaited `request_wait_s`; a request matches a cached window within `match_ms`.
    """

    ttl_s: float = 3600.0
    max_bytes: int = 16 << 20
    max_snippets: int = 1000
    purge_s: float = 60.0
    per_device_per_min: int = 6
    match_ms: int = 2000
    request_poll_s: float = 5.0
    request_wait_s: float = 60.0


@dataclass(frozen=True)
class CommandsSection:
    """Commands for nodes, fetched by their polls of GET /c (docs/protocol.md section 3).

    At most `queue` commands wait per node; a sender waits `ack_timeout_s` for the
    node to confirm one; a node that polled within `reachable_s` counts as connected.
    """

    queue: int = 16
    ack_timeout_s: float = 30.0
    reachable_s: float = 60.0


@dataclass(frozen=True)
class GatewayConfig:
    """The whole gateway configuration."""

    version: int
    gateway: GatewaySection
    identity: IdentitySection
    coap: CoapSection = field(default_factory=CoapSection)
    pipeline: PipelineSection = field(default_factory=PipelineSection)
    outbox: OutboxSection = field(default_factory=OutboxSection)
    uplink: UplinkSection = field(default_factory=UplinkSection)
    metrics: MetricsSection = field(default_factory=MetricsSection)
    rules: RulesSection = field(default_factory=RulesSection)
    inference: InferenceSection = field(default_factory=InferenceSection)
    modbus: ModbusSection = field(default_factory=ModbusSection)
    policy: PolicySection = field(default_factory=PolicySection)
    rawcache: RawCacheSection = field(default_factory=RawCacheSection)
    commands: CommandsSection = field(default_factory=CommandsSection)


_LIMITS: dict[str, tuple[float, float]] = {
    "coap.port": (0, 65535), "metrics.port": (0, 65535), "coap.max_peers": (1, 100_000),
    "coap.idle_timeout_s": (1, 86_400), "coap.handshake_timeout_s": (0.5, 600),
    "coap.max_handshakes": (1, 100_000), "coap.new_source_rate": (0.1, 100_000),
    "pipeline.window_s": (0.1, 86_400),
    "pipeline.max_pending": (1, 10_000_000), "uplink.batch_max_records": (1, 10_000),
    "uplink.interval_s": (0.01, 3600), "uplink.timeout_s": (0.1, 600),
    "uplink.backoff_max_s": (0.1, 86_400), "uplink.daily_budget_bytes": (0, 1 << 50),
    "outbox.max_records": (100, 1_000_000_000),
    "rules.poll_s": (0.05, 3600), "inference.hop": (1, 65_536), "inference.poll_s": (0.05, 3600),
    "policy.poll_s": (0.05, 86_400),
    "rawcache.ttl_s": (1, 30 * 86_400), "rawcache.max_bytes": (0, 1 << 40),
    "rawcache.max_snippets": (0, 10_000_000), "rawcache.purge_s": (0.05, 86_400),
    "rawcache.per_device_per_min": (1, 10_000), "rawcache.match_ms": (0, 86_400_000),
    "rawcache.request_poll_s": (0.05, 86_400), "rawcache.request_wait_s": (0.1, 86_400),
    "commands.queue": (1, 1024), "commands.ack_timeout_s": (0.1, 3600),
    "commands.reachable_s": (0.1, 86_400),
}


def load_config(path: Path, environ: typing.Mapping[str, str] | None = None) -> GatewayConfig:
    """Read, override from the environment, validate; relative paths resolve against the file."""
    try:
        data = tomllib.loads(path.read_text())
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: {exc}") from None
    _apply_env(data, os.environ if environ is None else environ)
    try:
        return parse_config(data, source=str(path), base=path.parent)
    except ConfigError as exc:
        line = _line_of(path.read_text(), exc.field)
        if line is None:
            raise
        raise ConfigError(str(exc).replace(f"{path}: ", f"{path}:{line}: ", 1), exc.field) from None


def _line_of(text: str, dotted: str) -> int | None:
    """Best-effort line number of `section.key` in TOML text (tomllib reports none)."""
    section, _, key = dotted.rpartition(".")
    current = ""
    for number, line in enumerate(text.splitlines(), start=1):
        stripped = line.strip()
        if stripped.startswith("[") and not stripped.startswith("[["):
            current = stripped.strip("[] ")
            if current == dotted:
                return number
        elif current == section and stripped.split("=", 1)[0].strip() == key:
            return number
    return None


def parse_config(data: dict[str, Any], source: str = "<config>",
                 base: Path = Path(".")) -> GatewayConfig:
    """Validate an already-parsed TOML document."""
    if data.get("version") != CONFIG_VERSION:
        raise ConfigError(f"{source}: version: expected {CONFIG_VERSION}, "
                          f"got {data.get('version')!r}", "version")
    config = _build(GatewayConfig, data, "", source, base)
    assert isinstance(config, GatewayConfig)
    try:
        config.modbus.validate(source)
    except ModbusConfigError as exc:
        raise ConfigError(str(exc), "modbus") from None
    return config


def _build(cls: type[Any], data: Any, prefix: str, source: str, base: Path) -> Any:
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: {prefix.rstrip('.') or 'document'}: expected a table",
                          prefix.rstrip("."))
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise ConfigError(f"{source}: {prefix}{unknown[0]}: unknown field "
                          f"(known: {', '.join(sorted(names))})", prefix + unknown[0])
    values = {}
    for f in dataclasses.fields(cls):
        where = prefix + f.name
        if f.name in data:
            values[f.name] = _value(hints[f.name], data[f.name], where, source, base)
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise ConfigError(f"{source}: {where}: required field missing", where)
    return cls(**values)


def _value(hint: Any, raw: Any, where: str, source: str, base: Path) -> Any:
    if dataclasses.is_dataclass(hint):
        return _build(typing.cast(type, hint), raw, where + ".", source, base)
    if isinstance(hint, types.UnionType):  # only `X | None` is used
        inner = next(a for a in typing.get_args(hint) if a is not type(None))
        return _value(inner, raw, where, source, base)
    if hint is Path:
        if not isinstance(raw, str) or not raw:
            raise ConfigError(f"{source}: {where}: expected a path string, got {raw!r}", where)
        return (base / raw).resolve()
    if typing.get_origin(hint) is tuple and dataclasses.is_dataclass(typing.get_args(hint)[0]):
        if not isinstance(raw, list):  # [[array.of.tables]]
            raise ConfigError(f"{source}: {where}: expected an array of tables", where)
        item = typing.get_args(hint)[0]
        return tuple(_build(item, x, f"{where}[{i}].", source, base) for i, x in enumerate(raw))
    if typing.get_origin(hint) is tuple:
        if not isinstance(raw, list) or not all(isinstance(x, str) for x in raw):
            raise ConfigError(f"{source}: {where}: expected a list of strings, got {raw!r}", where)
        return tuple(raw)
    return _scalar(hint, raw, where, source)


def _scalar(hint: Any, raw: Any, where: str, source: str) -> Any:
    ok = (hint is bool and isinstance(raw, bool)) or (hint is str and isinstance(raw, str)) \
        or (hint is int and type(raw) is int) \
        or (hint is float and type(raw) in (int, float))
    if not ok:
        raise ConfigError(f"{source}: {where}: expected {hint.__name__}, got {raw!r}", where)
    low, high = _LIMITS.get(where, (float("-inf"), float("inf")))
    if hint in (int, float) and not low <= raw <= high:
        raise ConfigError(f"{source}: {where}: {raw!r} outside {low:g}..{high:g}", where)
    return float(raw) if hint is float else raw


def _apply_env(data: dict[str, Any], environ: typing.Mapping[str, str]) -> None:
    for key, text in environ.items():
        if not key.startswith(ENV_PREFIX):
            continue
        section, _, name = key[len(ENV_PREFIX):].lower().partition("_")
        if section == "version" or not name:
            continue
        data.setdefault(section, {})[name] = _env_value(text)


def _env_value(text: str) -> Any:
    """Environment values are TOML literals when they parse as one, else strings."""
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text
