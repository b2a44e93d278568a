"""The node's Modbus RTU slave in real MicroPython (64 KB heap) on a socat pty.

The client is pymodbus (sync and async RTU serial clients) or hand-made
frames over pyserial for what a conforming client never sends; the register
map is the shipped firmware/registers.json (hw/registers/sensor-node.toml).
"""

from __future__ import annotations

import asyncio
import struct
from collections.abc import Iterator
from pathlib import Path

import pytest
from pymodbus import FramerType
from pymodbus.client import AsyncModbusSerialClient, ModbusSerialClient
from pymodbus.pdu import ExceptionResponse

from tests.modbus_rig import PtyPair, RawRtu, SlaveProcess, rtu_frame

pytestmark = pytest.mark.timeout(60)

UNIT = 7
CRC_ERRORS, EXCEPTIONS, UNIT_MSGS, BROADCASTS = 17, 18, 19, 20


@pytest.fixture
def pty(tmp_path: Path) -> Iterator[PtyPair]:
    with PtyPair(tmp_path) as pair:
        yield pair


@pytest.fixture
def slave(pty: PtyPair) -> Iterator[SlaveProcess]:
    with SlaveProcess(pty.a, unit=UNIT) as proc:
        yield proc
        proc.stop()
        assert "Traceback" not in proc.stderr, proc.stderr


@pytest.fixture
def client(pty: PtyPair, slave: SlaveProcess) -> Iterator[ModbusSerialClient]:
    c = ModbusSerialClient(str(pty.b), framer=FramerType.RTU, baudrate=19200, timeout=1,
                           retries=0)
    assert c.connect()
    yield c
    c.close()


@pytest.fixture
def raw(pty: PtyPair, slave: SlaveProcess) -> Iterator[RawRtu]:
    r = RawRtu(pty.b)
    yield r
    r.close()


def _counter(client: ModbusSerialClient, address: int) -> int:
    r = client.read_input_registers(address, count=1, device_id=UNIT)
    assert not r.isError(), r
    return int(r.registers[0])


def _words_float(words: list[int], little_words: bool = False) -> float:
    hi, lo = (words[1], words[0]) if little_words else (words[0], words[1])
    return float(struct.unpack(">f", struct.pack(">HH", hi, lo))[0])


def test_reads_every_table(client: ModbusSerialClient) -> None:
    regs = client.read_input_registers(0, count=9, device_id=UNIT)  # FC04
    assert not regs.isError(), regs
    w = regs.registers
    assert _words_float(w[0:2]) == 21.5  # temp, float32 ABCD
    assert _words_float(w[2:4], little_words=True) == 0.75  # vib, float32 CDAB
    assert w[4] == 2150 and w[5] == 750  # the same values as scaled int16/uint16
    assert w[6] == 1  # status: link up, no alarm, not stopped
    assert w[7] | w[8] << 16 == 7  # samples, uint32 low word first
    holding = client.read_holding_registers(0, count=4, device_id=UNIT)  # FC03
    assert holding.registers == [0, 1000, 8000, 2500]  # period 1000 ms, 80.00 degC, 2.500 g
    coils = client.read_coils(0, count=3, device_id=UNIT)  # FC01
    assert coils.bits[:3] == [False, False, False]
    discrete = client.read_discrete_inputs(0, count=4, device_id=UNIT)  # FC02
    assert discrete.bits[:4] == [False, False, False, True]  # link_up


def test_writes_every_kind_and_reads_them_back(client: ModbusSerialClient,
                                               slave: SlaveProcess) -> None:
    assert not client.write_coil(0, True, device_id=UNIT).isError()  # FC05: stop
    assert client.read_coils(0, count=1, device_id=UNIT).bits[0] is True
    assert client.read_discrete_inputs(2, count=1, device_id=UNIT).bits[0] is True  # stopped
    assert _counter(client, 6) & 2  # status bit 1: stopped
    assert not client.write_register(2, 5000, device_id=UNIT).isError()  # FC06: 50.00 degC
    assert not client.write_registers(0, [0, 250], device_id=UNIT).isError()  # FC10: 250 ms
    assert not client.write_coils(0, [False, True, True], device_id=UNIT).isError()  # FC0F
    assert client.read_holding_registers(0, count=3, device_id=UNIT).registers == [0, 250, 5000]
    assert client.read_coils(0, count=3, device_id=UNIT).bits[:3] == [False, True, True]
    slave.wait_for("modbus_write", point="period_ms", value=250)
    slave.wait_for("modbus_write", point="temp_alarm", value=50.0)
    slave.wait_for("modbus_write", point="buzzer", value=1)
    slave.stop()
    assert slave.wait_for("exit")["period_ms"] == 250  # reached the node's config


def test_refused_writes_answer_exceptions_and_change_nothing(
        client: ModbusSerialClient) -> None:
    over = client.write_register(2, 20000, device_id=UNIT)  # 200 degC > max 150
    assert isinstance(over, ExceptionResponse) and over.exception_code == 3
    beyond = client.write_coil(3, True, device_id=UNIT)  # only 3 coils
    assert isinstance(beyond, ExceptionResponse) and beyond.exception_code == 2
    half_bad = client.write_registers(2, [5000, 20000], device_id=UNIT)  # 2nd one out of range
    assert isinstance(half_bad, ExceptionResponse) and half_bad.exception_code == 3
    assert client.read_holding_registers(2, count=2, device_id=UNIT).registers == [8000, 2500]
    assert _counter(client, EXCEPTIONS) == 3


def test_bad_quantity_gets_exception_03(raw: RawRtu) -> None:
    # pymodbus refuses to send these
    reply = raw.transact(bytes([UNIT, 0x03, 0x00, 0x00, 0x00, 0x7E]))  # 126 registers
    assert reply == rtu_frame(bytes([UNIT, 0x83, 0x03]))
    reply = raw.transact(bytes([UNIT, 0x01, 0x00, 0x00, 0x00, 0x00]))  # 0 coils
    assert reply == rtu_frame(bytes([UNIT, 0x81, 0x03]))
    reply = raw.transact(bytes([UNIT, 0x05, 0x00, 0x00, 0x12, 0x34]))  # coil := 0x1234
    assert reply == rtu_frame(bytes([UNIT, 0x85, 0x03]))


def test_bad_address_gets_exception_02(raw: RawRtu) -> None:
    reply = raw.transact(bytes([UNIT, 0x04, 0x00, 0x15, 0x00, 0x02]))  # 21..22 of 22
    assert reply == rtu_frame(bytes([UNIT, 0x84, 0x02]))
    reply = raw.transact(bytes([UNIT, 0x03, 0x01, 0x00, 0x00, 0x01]))  # holding 256
    assert reply == rtu_frame(bytes([UNIT, 0x83, 0x02]))


def test_unknown_function_gets_exception_01(raw: RawRtu) -> None:
    reply = raw.transact(bytes([UNIT, 0x2B, 0x0E, 0x01, 0x00]))  # read device id: not served
    assert reply == rtu_frame(bytes([UNIT, 0xAB, 0x01]))
    reply = raw.transact(bytes([UNIT, 0x07]))  # read exception status
    assert reply == rtu_frame(bytes([UNIT, 0x87, 0x01]))


def test_bad_crc_is_ignored_and_counted(raw: RawRtu, client: ModbusSerialClient) -> None:
    good = rtu_frame(bytes([UNIT, 0x03, 0x00, 0x00, 0x00, 0x01]))
    raw.send(good[:-1] + bytes([good[-1] ^ 0xFF]))
    assert raw.silence(0.3)
    raw.send(good[:5] + bytes([good[5] ^ 0x01]) + good[6:])  # a flipped bit in the PDU
    assert raw.silence(0.3)
    assert _counter(client, CRC_ERRORS) == 2
    assert _counter(client, EXCEPTIONS) == 0


def test_wrong_length_with_good_crc_gets_exception_03(raw: RawRtu) -> None:
    reply = raw.transact(bytes([UNIT, 0x03, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00]))  # 2 extra
    assert reply == rtu_frame(bytes([UNIT, 0x83, 0x03]))
    # FC10 whose byte count disagrees with its quantity
    reply = raw.transact(bytes([UNIT, 0x10, 0x00, 0x02, 0x00, 0x02, 0x02, 0x13, 0x88]))
    assert reply == rtu_frame(bytes([UNIT, 0x90, 0x03]))


def test_broadcast_write_is_applied_without_reply(raw: RawRtu,
                                                  client: ModbusSerialClient) -> None:
    raw.send(rtu_frame(bytes([0, 0x06, 0x00, 0x03, 0x04, 0xD2])))  # vib_alarm := 1.234 g
    assert raw.silence(0.3)
    raw.send(rtu_frame(bytes([0, 0x05, 0x00, 0x01, 0xFF, 0x00])))  # relay on
    assert raw.silence(0.3)
    assert client.read_holding_registers(3, count=1, device_id=UNIT).registers == [1234]
    assert client.read_coils(1, count=1, device_id=UNIT).bits[0] is True
    assert _counter(client, BROADCASTS) == 2


def test_frames_for_other_units_are_ignored(raw: RawRtu, client: ModbusSerialClient) -> None:
    assert raw.transact(bytes([UNIT + 1, 0x03, 0x00, 0x00, 0x00, 0x01]), wait_s=0.3) == b""
    assert raw.transact(bytes([UNIT + 1, 0x06, 0x00, 0x02, 0x00, 0x01]), wait_s=0.3) == b""
    assert client.read_holding_registers(2, count=1, device_id=UNIT).registers == [8000]
    assert _counter(client, UNIT_MSGS) == 2  # the two reads of this test's client


def test_back_to_back_polls_raw_and_async(raw: RawRtu, pty: PtyPair) -> None:
    """Sanity only (tools/bench/modbus.py measures): many polls, every answer right."""
    request = rtu_frame(bytes([UNIT, 0x04, 0x00, 0x04, 0x00, 0x02]))
    expected = rtu_frame(bytes([UNIT, 0x04, 0x04, 0x08, 0x66, 0x02, 0xEE]))
    for _ in range(200):
        raw.serial.write(request)
        assert raw.serial.read(len(expected)) == expected
    raw.close()

    async def polls() -> None:
        c = AsyncModbusSerialClient(str(pty.b), framer=FramerType.RTU, baudrate=19200,
                                    timeout=1, retries=0)
        assert await c.connect()
        try:
            for _ in range(200):
                r = await c.read_input_registers(4, count=2, device_id=UNIT)
                assert r.registers == [2150, 750]
        finally:
            c.close()

    asyncio.run(polls())
