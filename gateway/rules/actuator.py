"""Actuator ports: writes to a machine's controller, each verified by reading it back.

`ActuatorPort` is the interface the emergency-stop action needs; the Modbus TCP
implementation keeps one connection per controller (one lock per bus, so an
action never interleaves frames with another), connects on first use, and
reconnects and retries once when the connection has dropped.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Protocol

from pymodbus.client import AsyncModbusTcpClient
from pymodbus.exceptions import ModbusException

log = logging.getLogger(__name__)


class ActuatorError(Exception):
    """The controller could not be reached or refused the request."""


class ActuatorPort(Protocol):
    """A controller the gateway writes to; True means the value read back as written."""

    async def write_coil(self, unit: int, address: int, value: bool) -> bool:
        """Set one coil, read it back."""
        ...

    async def write_register(self, unit: int, address: int, value: int) -> bool:
        """Set one holding register, read it back."""
        ...

    async def close(self) -> None:
        """Release the connection."""
        ...


class ModbusTcpPort:
    """An ActuatorPort on a Modbus TCP controller (pymodbus AsyncModbusTcpClient)."""

    def __init__(self, host: str, port: int = 502, timeout_s: float = 0.5) -> None:
        self.host = host
        self.port = port
        self.timeout_s = timeout_s
        self._client: AsyncModbusTcpClient | None = None  # made in the loop, on first use
        self._lock = asyncio.Lock()

    async def write_coil(self, unit: int, address: int, value: bool) -> bool:
        """Write a coil (function 5) and read it back (function 1)."""
        async with self._lock:
            return await self._attempt(self._coil, unit, address, value)

    async def write_register(self, unit: int, address: int, value: int) -> bool:
        """Write a holding register (function 6) and read it back (function 3)."""
        async with self._lock:
            return await self._attempt(self._register, unit, address, value)

    async def connect(self) -> None:
        """Connect ahead of the first write (optional: writes connect on demand)."""
        async with self._lock:
            await self._ensure_connected()

    async def close(self) -> None:
        """Close the connection."""
        if self._client is not None:
            self._client.close()

    async def _attempt(self, write: _Write, unit: int, address: int, value: int) -> bool:
        for attempt in (1, 2):
            try:
                client = await self._ensure_connected()
                return await write(client, unit, address, value)
            except (ModbusException, OSError, TimeoutError) as exc:
                await self.close()
                if attempt == 2:
                    raise ActuatorError(f"modbus {self.host}:{self.port} unit {unit}: "
                                        f"{exc}") from exc
                log.warning("modbus %s:%d: %s; reconnecting", self.host, self.port, exc)
        raise AssertionError("unreachable")

    async def _ensure_connected(self) -> AsyncModbusTcpClient:
        if self._client is None:
            self._client = AsyncModbusTcpClient(self.host, port=self.port, timeout=self.timeout_s,
                                                retries=0, reconnect_delay=0)
        if not self._client.connected and not await self._client.connect():
            raise ActuatorError(f"modbus {self.host}:{self.port}: cannot connect")
        return self._client

    @staticmethod
    async def _coil(client: AsyncModbusTcpClient, unit: int, address: int, value: int) -> bool:
        written = await client.write_coil(address, bool(value), device_id=unit)
        if written.isError():
            raise ActuatorError(f"modbus unit {unit} refused coil {address}: {written}")
        read = await client.read_coils(address, count=1, device_id=unit)
        return not read.isError() and bool(read.bits[0]) == bool(value)

    @staticmethod
    async def _register(client: AsyncModbusTcpClient, unit: int, address: int,
                        value: int) -> bool:
        written = await client.write_register(address, value, device_id=unit)
        if written.isError():
            raise ActuatorError(f"modbus unit {unit} refused register {address}: {written}")
        read = await client.read_holding_registers(address, count=1, device_id=unit)
        return not read.isError() and read.registers[0] == value


class _Write(Protocol):
    async def __call__(self, client: AsyncModbusTcpClient, unit: int, address: int,
                       value: int) -> bool: ...
