"""Security policy documents: what they may say, validated once for cloud and gateway alike.

A policy is declarative data (TOML or JSON at the cloud, CBOR on the wire):

    version = 1
    [privacy]
    device_ids = "pseudonymise"            # or "clear" (default)
    [[privacy.rule]]
    field = "humidity"                     # a channel, or a value name of events
    action = "drop"                        # drop | generalise | perturb | encrypt
    [[privacy.rule]]
    field = "temp"
    action = "generalise"
    step = 0.5                             # or: buckets = [0, 10, 20]  or: digits = 2
    [[privacy.rule]]
    field = "vib"
    action = "perturb"
    epsilon = 1.0                          # Laplace mechanism, scale = sensitivity / epsilon
    sensitivity = 0.05
    [devices]
    allowed = ["node-01", "node-02"]       # absent: any device with a site certificate
    revoked = ["node-66"]
    [devices.resources]
    node-01 = ["/r"]                       # CoAP paths a device may use (absent: all)
    [limits]
    max_actions_per_minute = 30            # 0: no limit

`parse_policy` turns the plain mapping into frozen dataclasses, raising
PolicyError naming the field (the cloud adds the file and line).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

POLICY_VERSION = 1
ACTIONS = ("drop", "generalise", "perturb", "encrypt")
DEVICE_ID_ACTIONS = ("clear", "pseudonymise")
MAX_NAME = 64
MAX_RULES = 256
MAX_DEVICES = 100_000


class PolicyError(ValueError):
    """A policy document that cannot be used; `field` is the dotted path at fault."""

    def __init__(self, field_path: str, problem: str) -> None:
        super().__init__(f"{field_path}: {problem}")
        self.field = field_path
        self.problem = problem


@dataclass(frozen=True, slots=True)
class FieldRule:
    """What happens to one channel (summaries) or event value of that name."""

    field: str
    action: str
    step: float | None = None
    buckets: tuple[float, ...] = ()
    digits: int | None = None
    epsilon: float | None = None
    sensitivity: float | None = None


@dataclass(frozen=True, slots=True)
class PrivacyPolicy:
    """Desensitisation at the edge: device ids and per-field rules."""

    device_ids: str = "clear"
    rules: tuple[FieldRule, ...] = ()

    def rule_for(self, name: str) -> FieldRule | None:
        """The rule of field name, if any."""
        return next((r for r in self.rules if r.field == name), None)


@dataclass(frozen=True, slots=True)
class DevicesPolicy:
    """Which nodes may report, which are revoked, and which resources each may use."""

    allowed: tuple[str, ...] | None = None
    revoked: tuple[str, ...] = ()
    resources: tuple[tuple[str, tuple[str, ...]], ...] = ()


@dataclass(frozen=True, slots=True)
class LimitsPolicy:
    """Bounds on local automation."""

    max_actions_per_minute: int = 0


@dataclass(frozen=True, slots=True)
class PolicyDocument:
    """One whole security policy."""

    privacy: PrivacyPolicy = field(default_factory=PrivacyPolicy)
    devices: DevicesPolicy = field(default_factory=DevicesPolicy)
    limits: LimitsPolicy = field(default_factory=LimitsPolicy)


def parse_policy(data: Mapping[str, Any]) -> PolicyDocument:
    """Validate a plain mapping (from TOML, JSON or CBOR) into a PolicyDocument."""
    _known(data, "", {"version", "privacy", "devices", "limits"})
    if data.get("version") != POLICY_VERSION:
        raise PolicyError("version", f"expected {POLICY_VERSION}, got {data.get('version')!r}")
    return PolicyDocument(privacy=_privacy(_table(data, "privacy")),
                          devices=_devices(_table(data, "devices")),
                          limits=_limits(_table(data, "limits")))


def to_plain(doc: PolicyDocument) -> dict[str, Any]:
    """The mapping parse_policy reads back into doc (for CBOR on the wire)."""
    rules = [{k: v for k, v in (("field", r.field), ("action", r.action), ("step", r.step),
                                ("buckets", list(r.buckets) or None), ("digits", r.digits),
                                ("epsilon", r.epsilon), ("sensitivity", r.sensitivity))
              if v is not None} for r in doc.privacy.rules]
    devices: dict[str, Any] = {"revoked": list(doc.devices.revoked),
                               "resources": {d: list(p) for d, p in doc.devices.resources}}
    if doc.devices.allowed is not None:
        devices["allowed"] = list(doc.devices.allowed)
    return {"version": POLICY_VERSION,
            "privacy": {"device_ids": doc.privacy.device_ids, "rule": rules},
            "devices": devices,
            "limits": {"max_actions_per_minute": doc.limits.max_actions_per_minute}}


def _privacy(data: Mapping[str, Any]) -> PrivacyPolicy:
    _known(data, "privacy.", {"device_ids", "rule"})
    device_ids = data.get("device_ids", "clear")
    if device_ids not in DEVICE_ID_ACTIONS:
        raise PolicyError("privacy.device_ids", f"expected one of {DEVICE_ID_ACTIONS}, "
                                                f"got {device_ids!r}")
    raw_rules = data.get("rule", [])
    if not isinstance(raw_rules, Sequence) or isinstance(raw_rules, str) \
            or len(raw_rules) > MAX_RULES:
        raise PolicyError("privacy.rule", f"expected a list of at most {MAX_RULES} tables")
    rules = tuple(_rule(r, f"privacy.rule[{i}]") for i, r in enumerate(raw_rules))
    seen: set[str] = set()
    for i, rule in enumerate(rules):
        if rule.field in seen:
            raise PolicyError(f"privacy.rule[{i}].field", f"{rule.field!r} has a rule already")
        seen.add(rule.field)
    return PrivacyPolicy(device_ids=device_ids, rules=rules)


_RULE_KEYS = {"field", "action", "step", "buckets", "digits", "epsilon", "sensitivity"}
_ACTION_PARAMS = {"drop": set(), "encrypt": set(), "perturb": {"epsilon", "sensitivity"},
                  "generalise": {"step", "buckets", "digits"}}


def _rule(raw: Any, where: str) -> FieldRule:
    if not isinstance(raw, Mapping):
        raise PolicyError(where, "expected a table")
    _known(raw, where + ".", _RULE_KEYS)
    name = _name(raw.get("field"), where + ".field")
    action = raw.get("action")
    if action not in ACTIONS:
        raise PolicyError(where + ".action", f"expected one of {ACTIONS}, got {action!r}")
    extra = set(raw) - {"field", "action"} - _ACTION_PARAMS[action]
    if extra:
        raise PolicyError(f"{where}.{sorted(extra)[0]}", f"not a parameter of {action}")
    if action == "perturb":
        return FieldRule(name, action, epsilon=_positive(raw, "epsilon", where),
                         sensitivity=_positive(raw, "sensitivity", where))
    if action == "generalise":
        return _generalise(raw, name, where)
    return FieldRule(name, action)


def _generalise(raw: Mapping[str, Any], name: str, where: str) -> FieldRule:
    given = [k for k in ("step", "buckets", "digits") if k in raw]
    if len(given) != 1:
        raise PolicyError(where, "generalise needs exactly one of step, buckets, digits")
    if given == ["step"]:
        return FieldRule(name, "generalise", step=_positive(raw, "step", where))
    if given == ["digits"]:
        digits = raw["digits"]
        if type(digits) is not int or not 0 <= digits <= 8:
            raise PolicyError(where + ".digits", f"expected an integer 0..8, got {digits!r}")
        return FieldRule(name, "generalise", digits=digits)
    edges = raw["buckets"]
    if not isinstance(edges, Sequence) or isinstance(edges, str) or not 1 <= len(edges) <= 64 \
            or not all(_finite(e) for e in edges) or list(edges) != sorted(set(edges)):
        raise PolicyError(where + ".buckets", "expected 1..64 increasing finite numbers")
    return FieldRule(name, "generalise", buckets=tuple(float(e) for e in edges))


def _devices(data: Mapping[str, Any]) -> DevicesPolicy:
    _known(data, "devices.", {"allowed", "revoked", "resources"})
    allowed = _names(data["allowed"], "devices.allowed") if "allowed" in data else None
    resources_raw = _table(data, "resources", "devices.")
    resources = []
    for device, paths in sorted(resources_raw.items()):
        where = f"devices.resources.{device}"
        _name(device, where)
        checked = _names(paths, where, max_len=MAX_NAME)
        if not all(p.startswith("/") for p in checked):
            raise PolicyError(where, "paths must start with '/'")
        resources.append((device, checked))
    return DevicesPolicy(allowed=allowed, revoked=_names(data.get("revoked", []),
                                                         "devices.revoked"),
                         resources=tuple(resources))


def _limits(data: Mapping[str, Any]) -> LimitsPolicy:
    _known(data, "limits.", {"max_actions_per_minute"})
    value = data.get("max_actions_per_minute", 0)
    if type(value) is not int or not 0 <= value <= 1_000_000:
        raise PolicyError("limits.max_actions_per_minute",
                          f"expected an integer 0..1000000, got {value!r}")
    return LimitsPolicy(max_actions_per_minute=value)


def _table(data: Mapping[str, Any], key: str, prefix: str = "") -> Mapping[str, Any]:
    value = data.get(key, {})
    if not isinstance(value, Mapping):
        raise PolicyError(prefix + key, "expected a table")
    return value


def _known(data: Mapping[str, Any], prefix: str, names: set[str]) -> None:
    unknown = sorted(str(k) for k in set(data) - names)
    if unknown:
        raise PolicyError(prefix + unknown[0], f"unknown field (known: {', '.join(sorted(names))})")


def _name(value: Any, where: str) -> str:
    if not isinstance(value, str) or not 0 < len(value) <= MAX_NAME or not value.isprintable():
        raise PolicyError(where, f"expected printable text of 1..{MAX_NAME} chars, got {value!r}")
    return value


def _names(value: Any, where: str, max_len: int = MAX_DEVICES) -> tuple[str, ...]:
    if not isinstance(value, Sequence) or isinstance(value, str) or len(value) > max_len:
        raise PolicyError(where, f"expected a list of at most {max_len} names")
    return tuple(_name(v, f"{where}[{i}]") for i, v in enumerate(value))


def _positive(raw: Mapping[str, Any], key: str, where: str) -> float:
    value: Any = raw.get(key)
    if not _finite(value) or float(value) <= 0:
        raise PolicyError(f"{where}.{key}", f"expected a positive number, got {value!r}")
    return float(value)


def _finite(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
