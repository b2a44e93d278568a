"""Specification of gateway configuration loading: readable errors with file, line, field."""

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tandem.gateway.config import ConfigError, load_config, parse_config

GOOD = """\
version = 1
[gateway]
id = "gw-01"
data_dir = "data"
[identity]
cert = "pki/cert.pem"
key = "pki/key.pem"
ca = "pki/ca.pem"
[coap]
port = 5684
allowed_devices = ["node-01"]
"""


def test_a_good_file_loads_with_paths_relative_to_it(tmp_path: Path) -> None:
    path = tmp_path / "gw.toml"
    path.write_text(GOOD)
    config = load_config(path, environ={})
    assert config.gateway.id == "gw-01"
    assert config.gateway.data_dir == tmp_path / "data"
    assert config.coap.allowed_devices == ("node-01",)
    assert config.pipeline.window_s == 10.0


def test_environment_overrides_file_values(tmp_path: Path) -> None:
    path = tmp_path / "gw.toml"
    path.write_text(GOOD)
    config = load_config(path, environ={"TANDEM_GW_COAP_PORT": "6000",
                                        "TANDEM_GW_UPLINK_URL": "https://cloud:8443"})
    assert config.coap.port == 6000
    assert config.uplink.url == "https://cloud:8443"


@pytest.mark.parametrize(("edit", "message"), [
    (("port = 5684", 'port = "x"'), r"gw.toml:10: coap.port: expected a valid integer, got 'x'"),
    (("port = 5684",
     "port = 70000"), r"gw.toml:10: coap.port: expected less than or equal to 65535, got 70000"),
    (("port = 5684", "prot = 5684"), r"gw.toml:10: coap.prot: unknown field"),
    (('id = "gw-01"', ""), r"gw.toml:2: gateway.id: required field missing"),
    (("version = 1", "version = 2"), r"gw.toml:1: version: expected 1, got 2"),
    (("[coap]", "[coap"), r"gw.toml: .*line 9"),
])
def test_errors_name_file_line_and_field(tmp_path: Path, edit: tuple[str, str],
                                          message: str) -> None:
    path = tmp_path / "gw.toml"
    path.write_text(GOOD.replace(*edit))
    with pytest.raises(ConfigError, match=message):
        load_config(path, environ={})


def test_a_missing_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "nope.toml", environ={})


toml_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.text(max_size=12), children, max_size=4),
    max_leaves=20)


@settings(max_examples=400, deadline=None)
@given(st.dictionaries(st.sampled_from(["version", "gateway", "identity", "coap", "uplink",
                                        "pipeline", "outbox", "metrics", "rules", "junk"]),
                       toml_values, max_size=8))
def test_any_document_is_either_a_config_or_a_config_error(document: dict[str, object]) -> None:
    try:
        parse_config(document)
    except ConfigError as exc:
        assert str(exc)  # says what is wrong


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=400))
def test_any_file_text_is_either_a_config_or_a_config_error(
        tmp_path_factory: pytest.TempPathFactory, text: str) -> None:
    path = tmp_path_factory.mktemp("fuzz") / "gw.toml"
    path.write_text(text)
    try:
        load_config(path, environ={})
    except ConfigError as exc:
        assert str(path) in str(exc)


def test_the_stop_actuator_is_the_thread_by_default_and_validated(tmp_path: Path) -> None:
    path = tmp_path / "gw.toml"
    path.write_text(GOOD)
    assert load_config(path, environ={}).modbus.actuator == "thread"
    path.write_text(GOOD + '\n[modbus]\nactuator = "process"\n')
    assert load_config(path, environ={}).modbus.actuator == "process"
    path.write_text(GOOD + '\n[modbus]\nactuator = "fork"\n')
    with pytest.raises(ConfigError, match=r"gw.toml:\d+: modbus.actuator: .*'process'"):
        load_config(path, environ={})
