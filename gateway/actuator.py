"""What a safety action writes through: the interface the rules use and Modbus implements.

It lives beside the data model, not in `rules/` or `modbus/`, so the rules can
hold ports and the Modbus layer can serve them without either importing the
other. Two implementations serve emergency stops: the bus coordinator
(gateway/modbus/coordinator.py), with one lock per bus, one retry rule and
one set of metrics, whether or not the address is a configured bus; and, with
`[modbus] actuator = "process"`, a port whose writes that same coordinator
code performs in the actuator process (gateway/modbus/actuatorclient.py).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Literal, Protocol, runtime_checkable

# verified, error text ("" when none), perf_counter_ns when the attempt finished
Attempt = tuple[bool, str, int]


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


@runtime_checkable
class HandOverPort(Protocol):
    """A port that takes a write synchronously and answers later (the actuator process):
    the reflex hands a stop over from its observer, before the gateway's loop runs anything
    else, and awaits the attempt's outcome on that loop."""

    def hand_over(self, table: Literal["coil", "register"], unit: int, address: int,
                  value: int) -> Awaitable[Attempt]:
        """Send the write now; the awaitable gives (verified, error, done stamp)."""
        ...


PortFactory = Callable[[str, int, float], ActuatorPort]  # (host, port, timeout_s) -> port
