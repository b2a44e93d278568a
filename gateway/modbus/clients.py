"""pymodbus clients for each kind of bus, chosen from a dict (no if-chains on strings)."""

from __future__ import annotations

from collections.abc import Callable

from pymodbus import FramerType
from pymodbus.client import AsyncModbusSerialClient, AsyncModbusTcpClient
from pymodbus.client.base import ModbusBaseClient

from tandem.gateway.modbus.config import ModbusBus

# pymodbus closes a connection after this many unanswered requests in a row; on a
# shared bus a dead unit must not take its live neighbours' connection with it.
MAX_NO_RESPONSES = 1_000_000


def _rtu(bus: ModbusBus) -> ModbusBaseClient:
    return AsyncModbusSerialClient(
        bus.port, framer=FramerType.RTU, baudrate=bus.baudrate, bytesize=8,
        parity=bus.parity, stopbits=2 if bus.parity == "N" else 1, timeout=bus.timeout_s,
        retries=0, reconnect_delay=0)


def _tcp(bus: ModbusBus) -> ModbusBaseClient:
    return AsyncModbusTcpClient(bus.host, port=bus.tcp_port, timeout=bus.timeout_s, retries=0,
                                reconnect_delay=0)


CLIENTS: dict[str, Callable[[ModbusBus], ModbusBaseClient]] = {"rtu": _rtu, "tcp": _tcp}


def make_client(bus: ModbusBus) -> ModbusBaseClient:
    """A disconnected pymodbus async client for the bus."""
    client = CLIENTS[bus.kind](bus)
    client.set_max_no_responses(MAX_NO_RESPONSES)
    return client


def inter_frame_s(bus: ModbusBus) -> float:
    """Silence kept between frames: configured, else 3.5 characters (RTU) or none (TCP)."""
    if bus.inter_frame_ms:
        return bus.inter_frame_ms / 1000
    if bus.kind != "rtu":
        return 0.0
    return 1.75e-3 if bus.baudrate > 19200 else 3.5 * 11 / bus.baudrate
