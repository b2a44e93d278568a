"""Register maps (hw/registers/*.toml), the firmware JSON made from them, the codecs,
and the `[[modbus.bus]]` configuration."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tandem.gateway.config import ConfigError, load_config
from tandem.gateway.modbus.codec import DecodeError, decode, encode, plan_reads
from tandem.gateway.modbus.registers import (
    DataType,
    Point,
    RegisterMapError,
    Table,
    load_register_map,
)
from tandem.tools.hw_registers import DEFAULT_MAP, DEFAULT_OUT, export_registers, render

MINIMAL = 'version = 1\nname = "x"\n\n[[point]]\nname = "a"\ntable = "input"\naddress = 0\n' \
          'type = "int16"\n'


def _map(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "map.toml"
    path.write_text(text)
    return path


def test_shipped_firmware_json_is_the_converted_toml() -> None:
    assert DEFAULT_OUT.read_text() == render(DEFAULT_MAP), \
        "firmware/registers.json drifted: run python -m tools.hw_registers"
    assert export_registers(check=True)


def test_sensor_node_map_loads() -> None:
    m = load_register_map(DEFAULT_MAP)
    assert m.point("vib").word_order == "little" and m.point("vib").type is DataType.FLOAT32
    assert m.point("stop").table is Table.COIL and m.point("stop").writable
    assert m.size(Table.INPUT) == 22


@pytest.mark.parametrize(("edit", "message"), [
    (('type = "int16"', 'type = "int24"'), r":8: point\[0\] \(a\).type: expected 'bool'.*'int24'"),
    (('address = 0', 'address = -1'), r":7: point\[0\] \(a\).address: expected greater than or eq"),
    (('type = "int16"', 'type = "int16"\nscale = 0'), r":9: point\[0\] \(a\).scale: expected gr"),
    (('type = "int16"', 'type = "int16"\naccess = "rw"'), r":9: .*access: input points are rea"),
    (('name = "a"', 'name = "A b"'), r":5: point\[0\] \(A b\).name: expected a lower_case name"),
    (('type = "int16"', 'type = "int16"\ncolour = 1'), r":9: .*colour: unknown field"),
    (('version = 1', 'version = 2'), r"map.toml:1: version: expected 1"),
])
def test_errors_name_file_line_and_field(tmp_path: Path, edit: tuple[str, str],
                                         message: str) -> None:
    with pytest.raises(RegisterMapError, match=message):
        load_register_map(_map(tmp_path, MINIMAL.replace(*edit, 1)))


def test_overlapping_points_are_refused(tmp_path: Path) -> None:
    text = MINIMAL.replace("int16", "float32") + \
        '\n[[point]]\nname = "b"\ntable = "input"\naddress = 1\ntype = "uint16"\n'
    with pytest.raises(RegisterMapError, match=r":13: point\[1\] \(b\).address: input 1 is alr"):
        load_register_map(_map(tmp_path, text))


def _point(dtype: DataType, scale: float = 1.0, word: str = "big", byte: str = "big") -> Point:
    return Point("p", Table.HOLDING, 0, dtype, scale, word, byte)


def test_word_and_byte_orders() -> None:
    # 0x11223344 as ABCD, CDAB, BADC, DCBA
    assert encode(_point(DataType.UINT32), 0x11223344) == [0x1122, 0x3344]
    assert encode(_point(DataType.UINT32, word="little"), 0x11223344) == [0x3344, 0x1122]
    assert encode(_point(DataType.UINT32, byte="little"), 0x11223344) == [0x2211, 0x4433]
    assert encode(_point(DataType.UINT32, word="little", byte="little"), 0x11223344) == \
        [0x4433, 0x2211]
    assert decode(_point(DataType.INT16, 0.01), [(-1234) & 0xFFFF]) == pytest.approx(-12.34)
    assert decode(_point(DataType.FLOAT32, word="little"), [0, 0x41AC]) == 21.5


def test_plan_merges_near_points_and_respects_limits() -> None:
    pts = [Point(f"p{i}", Table.INPUT, a, DataType.UINT16) for i, a in
           enumerate((0, 1, 5, 30, 200, 260))]
    blocks = plan_reads(pts, max_gap=8)
    assert [(b.start, b.count) for b in blocks] == [(0, 6), (30, 1), (200, 1), (260, 1)]
    assert [(b.start, b.count) for b in plan_reads(pts, max_gap=60)] == [(0, 31), (200, 61)]
    many = [Point(f"q{i}", Table.HOLDING, i, DataType.UINT16) for i in range(300)]
    assert all(b.count <= 125 for b in plan_reads(many))


register_types = st.sampled_from([t for t in DataType if t is not DataType.BOOL])
orders = st.sampled_from(("big", "little"))


@given(register_types, orders, orders, st.lists(st.integers(0, 0xFFFF), max_size=3),
       st.sampled_from((1.0, 0.1, 0.001, 10.0)))
def test_decoding_any_registers_never_crashes(dtype: DataType, word: str, byte: str,
                                              words: list[int], scale: float) -> None:
    point = _point(dtype, scale, word, byte)
    try:
        value = decode(point, words)
    except DecodeError:
        assert len(words) < point.words
        return
    assert isinstance(value, float)


@given(register_types, orders, orders, st.integers(-(2**31), 2**32 - 1))
def test_encode_decode_round_trip(dtype: DataType, word: str, byte: str, raw: int) -> None:
    point = _point(dtype, 1.0, word, byte)
    low, high = dtype.raw_range
    if not low <= raw <= high:
        with pytest.raises(ValueError):
            encode(point, raw)
        return
    value = float(struct.unpack(">f", struct.pack(">f", raw))[0]) \
        if dtype is DataType.FLOAT32 else float(raw)
    assert decode(point, encode(point, value)) == value


@given(st.lists(st.one_of(st.integers(0, 0xFFFF), st.booleans()), max_size=30))
def test_block_values_never_crash_on_short_or_odd_data(data: list[int]) -> None:
    m = load_register_map(DEFAULT_MAP)
    for block in plan_reads(m.points):
        try:
            values = block.values(data)
        except DecodeError:
            continue
        assert all(isinstance(v, float) for v in values.values())


GATEWAY_TOML = """version = 1
[gateway]
id = "gw-01"
[identity]
cert = "c.pem"
key = "k.pem"
ca = "ca.pem"

[[modbus.bus]]
name = "line1"
kind = "rtu"
port = "/dev/ttyUSB0"
baudrate = 115200
parity = "N"
inter_frame_ms = 2
units = [{name = "node-01", unit_id = 1, map = "maps/sensor-node.toml", poll_s = 0.5}]

[[modbus.bus]]
name = "plc"
kind = "tcp"
host = "10.0.0.5"
units = [{name = "press", unit_id = 3, map = "maps/sensor-node.toml", timeout_s = 0.2}]
"""


def test_gateway_config_reads_modbus_buses(tmp_path: Path) -> None:
    path = tmp_path / "gateway.toml"
    path.write_text(GATEWAY_TOML)
    config = load_config(path, environ={})
    line1, plc = config.modbus.bus
    assert line1.kind == "rtu" and line1.baudrate == 115200 and line1.inter_frame_ms == 2.0
    assert line1.units[0].map == (tmp_path / "maps" / "sensor-node.toml").resolve()
    assert plc.kind == "tcp" and plc.tcp_port == 502 and plc.units[0].timeout_s == 0.2


@pytest.mark.parametrize(("edit", "message"), [
    (('kind = "tcp"', 'kind = "udp"'),
     r"gateway.toml:20: modbus.bus\[1\].kind: expected 'rtu' or 'tcp', got 'udp'"),
    (("unit_id = 3", "unit_id = 300"),
     r"gateway.toml:22: modbus.bus\[1\].units\[0\].unit_id: expected less than or equal to 247"),
    (("timeout_s = 0.2}]", 'timeout_s = 0.2}, {name = "p2", unit_id = 3, map = "m.toml"}]'),
     r"gateway.toml:22: modbus.bus\[1\].units\[1\].unit_id: unit id 3 is used twice"),
    (("baudrate = 115200", 'baudrate = "fast"'),
     r"gateway.toml:13: modbus.bus\[0\].baudrate: expected a valid integer"),
    (('parity = "N"', 'parity = "X"'),
     r"gateway.toml:14: modbus.bus\[0\].parity: expected 'N', 'E' or 'O'"),
    (('name = "plc"', 'name = "line1"'),
     r"gateway.toml:19: modbus.bus\[1\].name: bus name 'line1' is used twice"),
    (('host = "10.0.0.5"', ''), r"gateway.toml:18: modbus.bus\[1\].host: tcp needs a host"),
])
def test_gateway_config_errors_name_the_field(tmp_path: Path, edit: tuple[str, str],
                                              message: str) -> None:
    path = tmp_path / "gateway.toml"
    path.write_text(GATEWAY_TOML.replace(*edit))
    with pytest.raises(ConfigError, match=message):
        load_config(path, environ={})
