"""Rules file (TOML) -> RuleSet, validated; every error names file, line and field.

    version = 1
    [features]                      # windows for every channel (all optional)
    window_n = 256
    bands = 16                      # or bands_hz = [[0, 10], [10, 50]]
    [features.channel.temp]         # per-channel overrides
    deadband = 0.1
    [action.stop_press]
    kind = "emergency_stop"
    host = "10.0.0.5"               # or: bus = "line1" (a [[modbus.bus]] of the gateway)
    coil = 0
    [[rule]]
    name = "overheat"
    when = { input = "temp", above = 80.0, clear_below = 75.0 }
    for_ms = 2000
    actions = ["stop_press"]

See docs/rules.md for the whole format.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

from tandem.gateway.config import ConfigError
from tandem.gateway.features.extract import (
    MAX_BANDS,
    FeatureSettings,
    SeriesSettings,
    is_feature_name,
)
from tandem.gateway.features.spectrum import Bands
from tandem.gateway.rules.definitions import (
    ActionSpec,
    AllOf,
    AnyOf,
    Condition,
    EmergencyStopSpec,
    Input,
    LocalAlarmSpec,
    NodeAlarmSpec,
    Not,
    Rule,
    RuleSet,
    Threshold,
)
from tandem.gateway.rules.tomlfields import FieldFault, Table, line_of

RULES_VERSION = 1
NAME = r"[A-Za-z0-9_.-]+"
MAX_RULES = 1_000
MAX_DEPTH = 8
MAX_LEAVES = 32
MAX_MS = 86_400_000


class RulesError(ConfigError):
    """A rules file that cannot be used; the message reads `file:line: field: problem`."""


def load_rules(path: Path) -> RuleSet:
    """Read and validate a rules file; relative paths in it resolve against its folder."""
    try:
        text = path.read_bytes().decode("utf-8")
    except OSError as exc:
        raise RulesError(f"{path}: cannot read: {exc.strerror}") from None
    except UnicodeDecodeError as exc:
        raise RulesError(f"{path}: not UTF-8 text (byte {exc.start})") from None
    return parse_rules_text(text, str(path), path.parent)


def parse_rules_text(text: str, source: str = "<rules>", base: Path = Path(".")) -> RuleSet:
    """Validate rules given as TOML text (`source` names it in errors)."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise RulesError(f"{source}: {exc}") from None
    except RecursionError:
        raise RulesError(f"{source}: nested too deeply") from None
    try:
        return _ruleset(data, source, base)
    except FieldFault as fault:
        line = line_of(text, fault.field)
        where = f"{source}:{line}" if line else source
        raise RulesError(f"{where}: {fault.field}: {fault.message}", fault.field) from None


def _ruleset(data: dict[str, Any], source: str, base: Path) -> RuleSet:
    top = Table(data, "")
    if top.raw("version") != RULES_VERSION or type(top.raw("version")) is not int:
        raise FieldFault("version", f"expected {RULES_VERSION}, got {top.raw('version')!r}")
    features = _features(Table(top.raw("features") or {}, "features"))
    actions = _actions(Table(top.raw("action") or {}, "action"), base)
    raw_rules = top.raw("rule") or []
    if not isinstance(raw_rules, list) or len(raw_rules) > MAX_RULES:
        raise FieldFault("rule", f"expected up to {MAX_RULES} [[rule]] tables")
    rules = tuple(_rule(Table(r, f"rule[{i}]"), actions, features)
                  for i, r in enumerate(raw_rules))
    top.finish()
    seen: set[str] = set()
    for i, rule in enumerate(rules):
        if rule.name in seen:
            raise FieldFault(f"rule[{i}].name", f"duplicate rule name {rule.name!r}")
        seen.add(rule.name)
    return RuleSet(rules=rules, actions=actions, features=features, source=source)


# -- features ---------------------------------------------------------------

def _features(table: Table) -> FeatureSettings:
    default = _series(table, SeriesSettings())
    max_series = table.integer("max_series", 10_000, 1, 10_000_000)
    channels_table = Table(table.raw("channel") or {}, table.path("channel"))
    channels = {name: _channel(channels_table, name, default)
                for name in list(channels_table.data)}
    channels_table.finish()
    table.finish()
    return FeatureSettings(default=default, channels=channels, max_series=max_series)


def _channel(channels: Table, name: str, default: SeriesSettings) -> SeriesSettings:
    if not 0 < len(name) <= 16:
        raise FieldFault(channels.path(name), "channel names have 1..16 characters")
    table = Table(channels.raw(name), channels.path(name))
    settings = _series(table, default)
    table.finish()
    return settings


def _series(table: Table, base: SeriesSettings) -> SeriesSettings:
    deadband: float | None = base.deadband
    if table.has("deadband"):
        deadband = table.number("deadband", None, 0.0)
    if table.raw("on_change") is True:
        deadband = 0.0 if deadband is None else deadband
    elif table.has("on_change") and table.raw("on_change") is not False:
        raise FieldFault(table.path("on_change"), "expected true or false")
    window_n = table.integer("window_n", base.window_n, 4, 65_536)
    return SeriesSettings(
        window_n=window_n,
        window_ms=table.integer("window_ms", base.window_ms, 1, MAX_MS),
        bands=_bands(table, base.bands),
        min_spectrum_samples=table.integer("min_spectrum_samples",
                                           min(base.min_spectrum_samples, window_n), 4, window_n),
        deadband=deadband,
        downsample=table.integer("downsample", base.downsample, 1, 10_000))


def _bands(table: Table, base: Bands) -> Bands:
    has_count, has_edges = table.has("bands"), table.has("bands_hz")
    if has_count and has_edges:
        raise FieldFault(table.path("bands_hz"), "give either bands or bands_hz, not both")
    if has_count:
        return Bands(count=table.integer("bands", None, 1, MAX_BANDS))
    if not has_edges:
        return base
    raw = table.raw("bands_hz")
    if not isinstance(raw, list) or not 0 < len(raw) <= MAX_BANDS:
        raise FieldFault(table.path("bands_hz"), f"expected 1..{MAX_BANDS} [low, high] pairs")
    edges = []
    for i, pair in enumerate(raw):
        ok = isinstance(pair, list) and len(pair) == 2 and all(
            isinstance(x, int | float) and not isinstance(x, bool) for x in pair)
        if not ok or not 0 <= pair[0] < pair[1]:
            raise FieldFault(f"{table.path('bands_hz')}[{i}]",
                             f"expected [low, high] with 0 <= low < high, got {pair!r}")
        edges.append((float(pair[0]), float(pair[1])))
    return Bands(count=len(edges), edges_hz=tuple(edges))


# -- actions ----------------------------------------------------------------

def _emergency_stop(t: Table, base: Path) -> EmergencyStopSpec:
    coil = t.integer("coil", None, 0, 65_535) if t.has("coil") else None
    register = t.integer("register", None, 0, 65_535) if t.has("register") else None
    if (coil is None) == (register is None):
        raise FieldFault(t.path("coil"), "give exactly one of coil or register")
    if len([k for k in ("host", "bus") if t.raw(k) not in (None, "")]) != 1:
        raise FieldFault(t.path("host"), "give exactly one of host (Modbus TCP) or bus")
    return EmergencyStopSpec(
        host=t.text("host", "", r"[A-Za-z0-9_.:-]*", 253), port=t.integer("port", 502, 1, 65_535),
        bus=t.text("bus", "", r"[A-Za-z0-9_.-]*"),
        unit=t.integer("unit", 1, 0, 255), coil=coil, register=register,
        value=t.integer("value", 1, 0, 1 if coil is not None else 65_535),
        timeout_s=t.number("timeout_s", 0.5, 0.01, 10.0))


def _node_alarm(t: Table, base: Path) -> NodeAlarmSpec:
    return NodeAlarmSpec(path=t.text("path", "alarm", r"[A-Za-z0-9_/.-]+"),
                         node=t.text("node", "", r"[^\x00-\x1f]*"))


def _local_alarm(t: Table, base: Path) -> LocalAlarmSpec:
    file = t.text("file", "", r"[^\x00]*", 4096)
    return LocalAlarmSpec(file=(base / file) if file else None,
                          text=t.text("text", "1", r"[^\x00]*", 256))


_ACTION_KINDS: dict[str, Callable[[Table, Path], ActionSpec]] = {
    "emergency_stop": _emergency_stop, "node_alarm": _node_alarm, "local_alarm": _local_alarm,
}


def _actions(table: Table, base: Path) -> dict[str, ActionSpec]:
    actions: dict[str, ActionSpec] = {}
    for name in list(table.data):
        entry = Table(table.raw(name), table.path(name))
        if not re.fullmatch(NAME, name) or len(name) > 48:
            raise FieldFault(entry.where, "action names are 1..48 of A-Z a-z 0-9 _ . -")
        kind = entry.text("kind", None, "|".join(_ACTION_KINDS))
        actions[name] = _ACTION_KINDS[kind](entry, base)
        entry.finish()
    table.finish()
    return actions


# -- rules ------------------------------------------------------------------

def _rule(t: Table, actions: dict[str, ActionSpec], features: FeatureSettings) -> Rule:
    name = t.text("name", None, NAME, 48)
    counter = [0]
    when = _condition(t.raw("when"), t.path("when"), features, 0, counter)
    rule = Rule(
        name=name, when=when, device=t.text("device", "*", r"[^\x00-\x1f]+"),
        for_ms=t.integer("for_ms", 0, 0, MAX_MS), clear_ms=t.integer("clear_ms", 0, 0, MAX_MS),
        severity=t.integer("severity", 2, 0, 3), actions=t.names("actions"),
        clear_actions=t.names("clear_actions"))
    for key in ("actions", "clear_actions"):
        for i, action in enumerate(getattr(rule, key)):
            if action not in actions:
                raise FieldFault(f"{t.path(key)}[{i}]", f"no [action.{action}] is declared")
    t.finish()
    return rule


def _condition(raw: Any, where: str, features: FeatureSettings, depth: int,
               counter: list[int]) -> Condition:
    if raw is None:
        raise FieldFault(where, "required field missing")
    table = Table(raw, where)
    if depth > MAX_DEPTH:
        raise FieldFault(where, f"conditions nest at most {MAX_DEPTH} deep")
    kinds = [k for k in ("all", "any", "not") if k in table.data]
    if len(kinds) > 1 or (kinds and len(table.data) > 1):
        raise FieldFault(where, "a combination holds exactly one of all, any or not")
    if kinds == ["not"]:
        return Not(_condition(table.raw("not"), table.path("not"), features, depth + 1, counter))
    if kinds:
        items = table.raw(kinds[0])
        if not isinstance(items, list) or not items:
            raise FieldFault(table.path(kinds[0]), "expected a non-empty list of conditions")
        children = tuple(_condition(c, f"{table.path(kinds[0])}[{i}]", features, depth + 1,
                                    counter) for i, c in enumerate(items))
        return AllOf(children) if kinds[0] == "all" else AnyOf(children)
    counter[0] += 1
    if counter[0] > MAX_LEAVES:
        raise FieldFault(where, f"a rule has at most {MAX_LEAVES} thresholds")
    return _threshold(table, features)


def _threshold(t: Table, features: FeatureSettings) -> Threshold:
    if ("input" in t.data) == ("rate" in t.data):
        raise FieldFault(t.path("input"), "give exactly one of input or rate")
    source = "input" if "input" in t.data else "rate"
    ref = _input(t, source, features)
    rate_ms = t.integer("over_ms", None, 1, MAX_MS) if source == "rate" else 0
    if ("above" in t.data) == ("below" in t.data):
        raise FieldFault(t.path("above"), "give exactly one of above or below")
    direction: Literal["above", "below"] = "above" if "above" in t.data else "below"
    level = t.number(direction)
    release = "clear_below" if direction == "above" else "clear_above"
    clear = t.number(release, level)
    if (direction == "above" and clear > level) or (direction == "below" and clear < level):
        raise FieldFault(t.path(release), f"the release point must not be {direction} "
                         f"the {direction} level {level:g}")
    t.finish()
    return Threshold(input=ref, direction=direction, level=level, clear=clear, rate_ms=rate_ms)


def _input(t: Table, key: str, features: FeatureSettings) -> Input:
    name = t.text(key, None, r"[^\x00-\x1f]+", 40)
    channel, dot, feature = name.rpartition(".")
    if not dot or not is_feature_name(feature):
        channel, feature = name, ""
    if not 0 < len(channel) <= 16:
        raise FieldFault(t.path(key), f"channel {channel!r} must have 1..16 characters")
    if feature.startswith("band"):
        size = features.for_channel(channel).bands.size
        if int(feature[4:]) >= size:
            raise FieldFault(t.path(key), f"{channel} has bands band0..band{size - 1}")
    return Input(channel=channel, feature=feature or None)
