"""Specification of the rules file: format, errors naming file+line+field, hot reload, fuzz."""

import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tandem.gateway.config import ConfigError
from tandem.gateway.features.spectrum import Bands
from tandem.gateway.rules.definitions import (
    AnyOf,
    EmergencyStopSpec,
    Input,
    LocalAlarmSpec,
    Not,
    Rule,
    RuleSet,
    Threshold,
)
from tandem.gateway.rules.engine import RuleEngine
from tandem.gateway.rules.loader import RulesError, load_rules, parse_rules_text
from tandem.gateway.rules.reload import RulesReloader

GOOD = """\
version = 1

[features]
window_n = 128
bands = 16

[features.channel.temp]
deadband = 0.1
window_n = 32

[action.stop_press]
kind = "emergency_stop"
host = "127.0.0.1"
port = 1502
unit = 1
coil = 0

[action.siren]
kind = "local_alarm"
file = "siren.flag"

[[rule]]
name = "overheat"
device = "*"
severity = 3
for_ms = 2000
clear_ms = 5000
when = { input = "temp", above = 80.0, clear_below = 75.0 }
actions = ["stop_press", "siren"]

[[rule]]
name = "bearing"
device = "press-01"
when.any = [
  { input = "vib.rms", above = 2.0, clear_below = 1.5 },
  { input = "score", above = 3.0 },
  { not = { rate = "temp", over_ms = 10000, below = 5.0 } },
]
"""


def _write(path: Path, text: str) -> Path:
    """Replace the file atomically, as operators are told to."""
    tmp = path.with_suffix(".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)
    return path


def test_a_good_file_loads_into_plain_definitions(tmp_path: Path) -> None:
    ruleset = load_rules(_write(tmp_path / "rules.toml", GOOD))
    overheat, bearing = ruleset.rules
    assert overheat == Rule("overheat", Threshold(Input("temp"), "above", 80.0, 75.0),
                            device="*", for_ms=2000, clear_ms=5000, severity=3,
                            actions=("stop_press", "siren"))
    assert isinstance(bearing.when, AnyOf)
    rms, score, rate = bearing.when.conditions
    assert rms == Threshold(Input("vib", "rms"), "above", 2.0, 1.5)
    assert score == Threshold(Input("score"), "above", 3.0, 3.0)  # no hysteresis given
    assert isinstance(rate, Not) and rate.condition == Threshold(Input("temp"), "below", 5.0,
                                                                 5.0, rate_ms=10_000)
    assert ruleset.actions["stop_press"] == EmergencyStopSpec("127.0.0.1", 1502, 1, coil=0)
    assert ruleset.actions["siren"] == LocalAlarmSpec(file=tmp_path / "siren.flag")
    assert ruleset.features.default.window_n == 128
    assert ruleset.features.default.bands == Bands(count=16)
    temp = ruleset.features.for_channel("temp")
    assert (temp.window_n, temp.deadband) == (32, 0.1)


@pytest.mark.parametrize(("edit", "message"), [
    (("above = 80.0, clear_below = 75.0", "above = 80.0, clear_below = 85.0"),
     r"rules.toml:28: rule\[0\].when.clear_below: the release point must not be above"),
    (('actions = ["stop_press", "siren"]', 'actions = ["stop_press", "horn"]'),
     r"rules.toml:29: rule\[0\].actions\[1\]: no \[action.horn\] is declared"),
    (("severity = 3", "severity = 7"), r"rules.toml:25: rule\[0\].severity: expected an integer "
     r"in 0..3, got 7"),
    (("port = 1502", "port = 1502\nprot = 2"), r"rules.toml:15: action.stop_press.prot: "
     r"unknown field"),
    (('kind = "local_alarm"', 'kind = "pager"'), r"rules.toml:19: action.siren.kind: expected"),
    (("window_n = 32", "window_n = 2"), r"rules.toml:9: features.channel.temp.window_n: "),
    (('{ input = "vib.rms"', '{ input = "vib.band16"'),
     r"rules.toml:35: rule\[1\].when.any\[0\].input: vib has bands band0..band15"),
    (('name = "bearing"', 'name = "overheat"'), r"rule\[1\].name: duplicate rule name"),
    (("coil = 0", "coil = 0\nregister = 4"), r"action.stop_press.coil: give exactly one"),
    (("port = 1502", 'port = 1502\nbus = "line1"'), r"action.stop_press.host: give exactly one"),
    (('host = "127.0.0.1"', 'host = ""'), r"action.stop_press.host: give exactly one"),
    (("version = 1", "version = 2"), r"rules.toml:1: version: expected 1, got 2"),
    (("[[rule]]\nname = \"bearing\"", "[[rule]\nname = \"bearing\""), r"rules.toml: .*line 31"),
])
def test_errors_name_file_line_and_field(tmp_path: Path, edit: tuple[str, str],
                                          message: str) -> None:
    assert edit[0] in GOOD
    path = _write(tmp_path / "rules.toml", GOOD.replace(*edit))
    with pytest.raises(RulesError, match=message):
        load_rules(path)


def test_a_stop_may_name_a_configured_bus_instead_of_a_host(tmp_path: Path) -> None:
    text = GOOD.replace('host = "127.0.0.1"\nport = 1502', 'bus = "line1"')
    ruleset = load_rules(_write(tmp_path / "rules.toml", text))
    assert ruleset.actions["stop_press"] == EmergencyStopSpec(unit=1, coil=0, bus="line1")


def test_rules_errors_are_config_errors_so_the_gateway_refuses_to_start() -> None:
    assert issubclass(RulesError, ConfigError)


def test_hot_reload_applies_a_good_change(tmp_path: Path) -> None:
    path = _write(tmp_path / "rules.toml", GOOD)
    applied: list[RuleSet] = []
    results: list[str] = []
    reloader = RulesReloader(path, applied.append, results.append)
    assert reloader.check() is None                         # unchanged since start
    _write(path, GOOD.replace("above = 80.0, clear_below = 75.0",
                              "above = 70.0, clear_below = 65.0"))
    assert reloader.check() is True
    assert applied[-1].rules[0].when == Threshold(Input("temp"), "above", 70.0, 65.0)
    assert results == ["ok"]
    assert reloader.check() is None


def test_a_bad_reload_names_file_line_and_field_and_the_old_rules_keep_firing(
        tmp_path: Path) -> None:
    path = _write(tmp_path / "rules.toml", GOOD)
    engine = RuleEngine(load_rules(path).rules)
    reloader = RulesReloader(path, lambda rs: engine.replace(rs.rules))
    _write(path, GOOD.replace("for_ms = 2000", 'for_ms = "soon"'))
    assert reloader.check() is False
    assert reloader.last_error.startswith(f"{path}:26: rule[0].for_ms: expected an integer")
    fired = [t.rule.name for t in engine.evaluate("n1", 0, ["temp"], lambda r: 99.0)]
    fired += [t.rule.name for t in engine.evaluate("n1", 2000, ["temp"], lambda r: 99.0)]
    assert fired == ["overheat"]                            # the old rule, still debounced
    _write(path, GOOD)                                      # fixed: applied again
    assert reloader.check() is True and reloader.last_error == ""


def test_a_vanished_file_is_an_error_not_a_crash(tmp_path: Path) -> None:
    path = _write(tmp_path / "rules.toml", GOOD)
    reloader = RulesReloader(path, lambda rs: None)
    path.unlink()
    assert reloader.check() is False
    assert "cannot read" in reloader.last_error


def test_binary_garbage_is_refused_cleanly(tmp_path: Path) -> None:
    path = tmp_path / "rules.toml"
    path.write_bytes(b"\xff\xfe\x00version")
    with pytest.raises(RulesError, match="not UTF-8"):
        load_rules(path)


_FRAGMENTS = st.sampled_from([
    "version = 1\n", "[[rule]]\n", "name = \"r\"\n", "when = { input = \"t\", above = 1 }\n",
    "when.all = [ { input = \"x.rms\", below = 2 } ]\n", "[action.a]\n", "kind = \"local_alarm\"\n",
    "kind = \"emergency_stop\"\n", "coil = -1\n", "[features]\n", "bands_hz = [[1, 0]]\n",
    "window_n = 0\n", "actions = [\"a\"]\n", "[features.channel.\"\"]\n", "when = {}\n",
    "when = { not = { not = { input = \"a.band99\", above = 1 } } }\n", "for_ms = 1e400\n",
    "[[rule]]\nname = \"r\"\n", "device = \"\"\n", "= = =\n", "\"\\u0000\" = 1\n",
])


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(st.text(max_size=300), st.lists(_FRAGMENTS, max_size=25).map("".join)))
def test_garbage_never_crashes_the_loader(text: str) -> None:
    try:
        ruleset = parse_rules_text(text, "fuzz.toml")
    except RulesError as exc:
        assert str(exc).startswith("fuzz.toml")
    else:
        assert isinstance(ruleset, RuleSet)
