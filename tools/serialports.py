"""Serial port selection shared by flash, provision and monitor: --port, or the only one."""

from __future__ import annotations

from dataclasses import dataclass


class PortError(Exception):
    """No usable serial port, or several and none chosen."""


@dataclass(frozen=True)
class PortInfo:
    """One serial port as the OS reports it."""

    device: str
    description: str
    hwid: str


def list_ports() -> list[PortInfo]:
    """Serial ports present now (USB bridges of dev boards show up here)."""
    from serial.tools import list_ports as lp

    return [PortInfo(p.device, p.description or "", p.hwid or "") for p in lp.comports()]


def choose_port(requested: str | None, ports: list[PortInfo] | None = None) -> str:
    """The requested port, else the only port present; PortError otherwise."""
    if requested:
        return requested
    found = list_ports() if ports is None else ports
    if len(found) == 1:
        return found[0].device
    if not found:
        raise PortError("no serial port found: plug the board in, or pass --port")
    names = ", ".join(p.device for p in found)
    raise PortError(f"several serial ports ({names}): choose one with --port")


def describe(ports: list[PortInfo]) -> str:
    """One line per port, for --list-ports."""
    if not ports:
        return "no serial ports found"
    return "\n".join(f"{p.device}\t{p.description}\t{p.hwid}" for p in ports)
