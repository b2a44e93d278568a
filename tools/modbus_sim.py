"""A simulated Modbus TCP controller (pymodbus's own server) for tests, benches and demos.

In-process: `async with modbus_controller() as port`. As its own process (a
controller is another machine, so benches should not share its event loop):
`python -m tools.modbus_sim` prints the port and serves until stdin closes.
`--units 100` serves ids 1..100 behind the one address (a Modbus TCP gateway's
fleet); with `--silent`, a request for an id not served gets no answer at all,
as from a unit that stopped answering (else exception 04).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import AsyncIterator, Callable, Sequence
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


def _silence_others(served: frozenset[int]) -> Callable[[bool, bytes], bytes]:
    """A packet filter that drops every answer for a unit id not served (MBAP byte 6).

    pymodbus's own `ignore_missing_devices` does not apply to a list of SimDevices
    (they answer exception 04), so the answer is suppressed on its way out.
    """
    def trace(sending: bool, packet: bytes) -> bytes:
        return b"" if sending and len(packet) > 6 and packet[6] not in served else packet
    return trace


@asynccontextmanager
async def modbus_controller(unit: int = 1, host: str = "127.0.0.1", port: int = 0,
                            units: Sequence[int] = (), silent: bool = False) -> AsyncIterator[int]:
    """Serve 64 coils and 64 holding registers (all 0) for `unit` (or each of `units`) on port
    (0: a free one); yield the port. `silent`: ids not served never answer."""
    served = frozenset(units or [unit])
    server = ModbusTcpServer([_device(u) for u in sorted(served)], address=(host, port),
                             trace_packet=_silence_others(served) if silent else None)
    await server.serve_forever(background=True)
    try:
        listener: Any = server.transport  # an asyncio.Server once listening
        bound: int = listener.sockets[0].getsockname()[1]
        yield bound
    finally:
        await server.shutdown()  # type: ignore[no-untyped-call]


async def _serve(units: Sequence[int], silent: bool) -> None:
    async with modbus_controller(units=units, silent=silent) as port:
        print(port, flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)


def main(argv: list[str] | None = None) -> int:
    """Serve until standard input closes; print the port first (for a parent process)."""
    parser = argparse.ArgumentParser(description="simulated Modbus TCP controller")
    parser.add_argument("--unit", type=int, default=1)
    parser.add_argument("--units", type=int, default=0, help="serve ids 1..N instead of --unit")
    parser.add_argument("--silent", action="store_true", help="ids not served never answer")
    args = parser.parse_args(argv)
    units = list(range(1, args.units + 1)) if args.units else [args.unit]
    asyncio.run(_serve(units, args.silent))
    return 0


if __name__ == "__main__":
    sys.exit(main())
