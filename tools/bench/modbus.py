"""`tandem bench modbus`: polls per second against the firmware's RTU slave on a pty.

Runs the node's slave (MicroPython, 64 KB heap) on one end of a socat pty pair
and times, on the other end, the same request (FC04, 8 input registers):
raw pyserial with precomputed frames (the ceiling on this machine), pymodbus's
sync and async serial clients, and the gateway's bus coordinator (which also
keeps the 3.5-character inter-frame silence). A pty has no baud-rate timing,
so the line-rate limits at 9600 and 115200 baud are computed on paper.

    python -m tools.bench_modbus [--seconds 2]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import serial
from pymodbus import FramerType
from pymodbus.client import AsyncModbusSerialClient, ModbusSerialClient

from tandem.gateway.modbus.config import ModbusBus
from tandem.gateway.modbus.coordinator import BusCoordinator
from tandem.tools.modbus_rig import PtyPair, Slave, line_rate_polls, rtu_frame

UNIT = 1
COUNT = 8
REQUEST = rtu_frame(bytes([UNIT, 0x04, 0, 0, 0, COUNT]))
RESPONSE_LEN = 5 + 2 * COUNT


class _NoSink:
    async def submit(self, item: object) -> bool:
        return True


def _timed(seconds: float, step: Callable[[], object]) -> float:
    n = 0
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        step()
        n += 1
    return n / seconds


def bench_raw(port: Path, seconds: float) -> float:
    """Precomputed request, fixed-length read: no framing work at all on this side."""
    with serial.Serial(str(port), 115200, timeout=1) as s:
        def step() -> None:
            s.write(REQUEST)
            if len(s.read(RESPONSE_LEN)) != RESPONSE_LEN:
                raise RuntimeError("raw: short reply")
        return _timed(seconds, step)


def bench_sync(port: Path, seconds: float) -> float:
    """pymodbus ModbusSerialClient (RTU framer)."""
    client = ModbusSerialClient(str(port), framer=FramerType.RTU, baudrate=115200, timeout=1,
                                retries=0)
    client.connect()
    try:
        return _timed(seconds, lambda: client.read_input_registers(0, count=COUNT,
                                                                   device_id=UNIT))
    finally:
        client.close()  # type: ignore[no-untyped-call]


async def _async_rate(port: Path, seconds: float) -> float:
    client = AsyncModbusSerialClient(str(port), framer=FramerType.RTU, baudrate=115200,
                                     timeout=1, retries=0)
    await client.connect()
    try:
        n = 0
        end = time.perf_counter() + seconds
        while time.perf_counter() < end:
            await client.read_input_registers(0, count=COUNT, device_id=UNIT)
            n += 1
        return n / seconds
    finally:
        client.close()


async def _coordinator_rate(port: Path, seconds: float) -> float:
    bus = ModbusBus(name="bench", kind="rtu", port=str(port), baudrate=115200, parity="N")
    coordinator = BusCoordinator(bus, _NoSink())
    try:
        n = 0
        end = time.perf_counter() + seconds
        while time.perf_counter() < end:
            await coordinator.exchange(1.0, lambda: coordinator.client.read_input_registers(
                0, count=COUNT, device_id=UNIT))
            n += 1
        return n / seconds
    finally:
        await coordinator.close()


def run(seconds: float) -> dict[str, float]:
    """Polls/s of each client against one slave; prints nothing."""
    with tempfile.TemporaryDirectory() as tmp, PtyPair(Path(tmp)) as pty, \
            Slave(pty.a, UNIT) as slave:
        figures = {
            "raw pyserial": bench_raw(pty.b, seconds),
            "pymodbus sync": bench_sync(pty.b, seconds),
            "pymodbus async": asyncio.run(_async_rate(pty.b, seconds)),
            "coordinator (3.5-char gap)": asyncio.run(_coordinator_rate(pty.b, seconds)),
        }
    counts = slave.exit_event.get("counts")
    if isinstance(counts, list) and counts[1]:
        raise RuntimeError(f"slave saw CRC errors: {counts}")
    return figures


def main(argv: list[str] | None = None) -> int:
    """Print polls/s on the pty and the line-rate limits on paper."""
    parser = argparse.ArgumentParser(prog="tandem bench modbus", description=__doc__)
    parser.add_argument("--seconds", type=float, default=2.0, help="per client")
    args = parser.parse_args(argv)
    figures = run(args.seconds)
    print(f"FC04 x{COUNT} registers ({len(REQUEST)} B request, {RESPONSE_LEN} B response), "
          "MicroPython slave on a socat pty:")
    for name, rate in figures.items():
        print(f"  {name:28s} {rate:8.0f} polls/s")
    print("line-rate limit on paper (11 bits/char, 3.5-char gaps both ways):")
    for baud in (9600, 19200, 115200):
        print(f"  {baud:6d} baud {line_rate_polls(baud, len(REQUEST), RESPONSE_LEN):14.0f}"
              " polls/s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
