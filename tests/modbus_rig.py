"""Modbus RTU test rig: the firmware's slave (MicroPython) on a socat pty, and a raw client.

    with PtyPair(tmp_path) as pty, SlaveProcess(pty.a, unit=1) as slave:
        client = ModbusSerialClient(str(pty.b), framer=FramerType.RTU, ...)
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import serial

from tandem.tools.modbus_rig import REGISTERS_JSON, PtyPair, crc16, rtu_frame, slave_argv
from tandem.tools.site import REPO
from tests.nodeproc import DEFAULT_HEAP, SOURCE_MAIN, NodeProcess

__all__ = ["PtyPair", "RawRtu", "SlaveProcess", "crc16", "rtu_frame"]


class SlaveProcess(NodeProcess):
    """tests/firmware/modbus_slave_main.py in MicroPython: the node's slave alone on a pty."""

    def __init__(self, port: Path, unit: int = 1, baud: int = 19200,
                 regmap: Path = REGISTERS_JSON, heap: str = DEFAULT_HEAP) -> None:
        super().__init__(port, heap, main=SOURCE_MAIN)  # argv replaced below
        self.argv = slave_argv(port, unit, baud, regmap, heap)

    def start(self) -> SlaveProcess:
        """Start and wait until the slave serves."""
        super().start()
        self.wait_for("ready", timeout=10)
        return self

    def __enter__(self) -> SlaveProcess:
        return self.start()


class RawRtu:
    """Hand-made frames over pyserial, for what a conforming client will not send."""

    def __init__(self, port: Path) -> None:
        self.serial = serial.Serial(str(port), 19200, timeout=0.5)

    def send(self, data: bytes) -> None:
        """Write bytes as they are (no CRC added)."""
        self.serial.reset_input_buffer()
        self.serial.write(data)

    def reply(self, wait_s: float = 0.5, quiet_s: float = 0.03) -> bytes:
        """Bytes answered until `quiet_s` of silence; b"" when nothing came within wait_s."""
        self.serial.timeout = wait_s
        data = self.serial.read(1)
        if not data:
            return b""
        self.serial.timeout = quiet_s
        while chunk := self.serial.read(256):
            data += chunk
        return data

    def transact(self, unit_pdu: bytes, wait_s: float = 0.5) -> bytes:
        """Send unit + PDU with its CRC; return the reply (b"" for none)."""
        self.send(rtu_frame(unit_pdu))
        return self.reply(wait_s)

    def silence(self, seconds: float = 0.2) -> bool:
        """True when nothing arrives for `seconds`."""
        time.sleep(seconds)
        return self.serial.in_waiting == 0

    def close(self) -> None:
        """Close the port."""
        self.serial.close()


class PlcProcess:
    """tools/modbus_sim.py in its own process: serves until its stdin closes."""

    def __init__(self) -> None:
        self.proc = subprocess.Popen([sys.executable, "-m", "tandem.tools.modbus_sim"], cwd=REPO,
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()  # the port, once it listens
        if not line.strip().isdigit():
            self.stop()
            raise RuntimeError(f"modbus_sim did not start: {line!r}")
        self.port = int(line)

    def stop(self) -> None:
        """Close stdin (the sim's signal to stop); kill it if it lingers."""
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)
