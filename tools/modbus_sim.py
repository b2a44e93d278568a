"""A simulated Modbus TCP controller (pymodbus's own server) for tests, benches and demos.

In-process: `async with modbus_controller() as port`. As its own process (a
controller is another machine, so benches should not share its event loop):
`python -m tools.modbus_sim` prints the port and serves until stdin closes.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from pymodbus.server import ModbusTcpServer
from pymodbus.simulator import SimData, SimDevice
from pymodbus.simulator.simutils import DataType

SIZE = 64


def _device(unit: int) -> SimDevice:
    coils = [SimData(0, count=SIZE, values=False, datatype=DataType.BITS)]
    inputs = [SimData(0, count=SIZE, values=False, datatype=DataType.BITS)]
    holding = [SimData(0, count=SIZE, values=0, datatype=DataType.REGISTERS)]
    registers = [SimData(0, count=SIZE, values=0, datatype=DataType.REGISTERS)]
    return SimDevice(id=unit, simdata=(coils, inputs, holding, registers))


@asynccontextmanager
async def modbus_controller(unit: int = 1, host: str = "127.0.0.1",
                            port: int = 0) -> AsyncIterator[int]:
    """Serve 64 coils and 64 holding registers (all 0) for `unit` on port (0: a free one);
    yield the port."""
    server = ModbusTcpServer(_device(unit), address=(host, port))
    await server.serve_forever(background=True)
    try:
        listener: Any = server.transport  # an asyncio.Server once listening
        bound: int = listener.sockets[0].getsockname()[1]
        yield bound
    finally:
        await server.shutdown()  # type: ignore[no-untyped-call]


async def _serve(unit: int) -> None:
    async with modbus_controller(unit) as port:
        print(port, flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)


def main(argv: list[str] | None = None) -> int:
    """Serve until standard input closes; print the port first (for a parent process)."""
    parser = argparse.ArgumentParser(description="simulated Modbus TCP controller")
    parser.add_argument("--unit", type=int, default=1)
    args = parser.parse_args(argv)
    asyncio.run(_serve(args.unit))
    return 0


if __name__ == "__main__":
    sys.exit(main())
