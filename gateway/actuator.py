"""What a safety action writes through: the interface the rules use and Modbus implements.

It lives beside the data model, not in `rules/` or `modbus/`, so the rules can
hold ports and the Modbus layer can serve them without either importing the
other. One implementation serves every emergency stop: the bus coordinator
(gateway/modbus/coordinator.py), with one lock per bus, one retry rule and
one set of metrics, whether or not the address is a configured bus.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol


class ActuatorError(Exception):
    """The controller gave no usable answer (unreachable, refused, or an exception code)."""


class ActuatorPort(Protocol):
    """A controller the gateway writes to; True means the value read back as written.

    False means the controller answered but the value did not read back as
    written; ActuatorError means no usable answer at all.
    """

    async def write_coil(self, unit: int, address: int, value: bool) -> bool:
        """Set one coil, read it back."""
        ...

    async def write_register(self, unit: int, address: int, value: int) -> bool:
        """Set one holding register, read it back."""
        ...

    async def close(self) -> None:
        """Release the connection."""
        ...


PortFactory = Callable[[str, int, float], ActuatorPort]  # (host, port, timeout_s) -> port
