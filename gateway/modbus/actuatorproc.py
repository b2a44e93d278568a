"""The actuator process: emergency-stop writes and their read-back, in an interpreter of its own.

The gateway starts it as `python -m tandem.gateway.modbus.actuatorproc --fd N`
(gateway/modbus/actuatorclient.py), N being its end of a Unix socketpair.
A plain subprocess rather than multiprocessing: `spawn` would re-import the
daemon's `__main__` and pickle a target, `fork` would copy a threaded process
(SQLite, the field-bus thread); `python -m` gives a clean interpreter that
imports only pymodbus and this package, with a start we fully control (argv
plus one inherited descriptor). Its own GIL is the point: the write and the
read-back never wait for the gateway's ingest.

It keeps one `BusCoordinator` per controller address (the gateway's one
verified write: lock, reconnect-once, exception codes), connected at start
for every `--target`, and answers each `WriteRequest` with a `WriteOutcome`
(gateway/modbus/actuatorwire.py). A frame it cannot read is answered with
an error outcome of id 0 and does not stop it. It exits when the gateway
closes its end (a stop, or the gateway dying: no orphan), after answering
every request in flight. With `--priority N` (1-99) it asks for SCHED_FIFO
at that priority, so a busy machine's other processes (ingest included)
cannot delay a stop; without CAP_SYS_NICE that is refused with a WARNING and
it runs at normal priority.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import socket
import sys
import time

from tandem.gateway.actuator import ActuatorError
from tandem.gateway.modbus.actuatorwire import (
    FrameError,
    FrameReader,
    Ready,
    WriteOutcome,
    WriteRequest,
    decode,
    encode,
)
from tandem.gateway.modbus.coordinator import BusCoordinator
from tandem.gateway.modbus.service import actuator_port

log = logging.getLogger("tandem.gateway.actuatorproc")

Address = tuple[str, int]


class Actuators:
    """The child's controllers by address, and how one request is carried out."""

    def __init__(self) -> None:
        self._ports: dict[Address, BusCoordinator] = {}

    def port(self, host: str, port: int, timeout_s: float) -> BusCoordinator:
        """The coordinator for host:port, made on first use."""
        key = (host, port)
        if key not in self._ports:
            self._ports[key] = actuator_port(host, port, timeout_s)
        return self._ports[key]

    async def connect(self, host: str, port: int, timeout_s: float) -> None:
        """Open the connection ahead of the first stop; a controller away now is no error."""
        client = self.port(host, port, timeout_s).client
        try:
            await asyncio.wait_for(client.connect(), timeout_s + 1)
        except (OSError, TimeoutError) as exc:
            log.warning("actuator process: %s:%d not reachable yet: %s", host, port, exc)

    async def perform(self, request: WriteRequest) -> WriteOutcome:
        """Write, read back, stamp; every failure becomes an error outcome."""
        port = self.port(request.host, request.port, request.timeout_s)
        try:
            if request.table == "coil":
                ok = await port.write_coil(request.unit, request.address, bool(request.value))
            else:
                ok = await port.write_register(request.unit, request.address, request.value)
        except ActuatorError as exc:
            return WriteOutcome(request.id, "error", str(exc), done_ns=time.perf_counter_ns())
        except Exception as exc:  # noqa: BLE001 - a fault answers this request, not the rest
            return WriteOutcome(request.id, "error", f"{type(exc).__name__}: {exc}",
                                done_ns=time.perf_counter_ns())
        done = time.perf_counter_ns()
        return WriteOutcome(request.id, "verified" if ok else "mismatch", "", port.written_ns,
                            done)

    async def close(self) -> None:
        """Close every connection."""
        for port in self._ports.values():
            await port.close()


async def serve(sock: socket.socket, targets: list[tuple[str, int, float]]) -> None:
    """Answer requests on sock until the gateway closes its end."""
    actuators = Actuators()
    await asyncio.gather(*(actuators.connect(*t) for t in targets))
    reader, writer = await asyncio.open_unix_connection(sock=sock)
    writer.write(encode(Ready(os.getpid())))
    frames = FrameReader()
    running: set[asyncio.Task[None]] = set()

    async def answer(request: WriteRequest) -> None:
        writer.write(encode(await actuators.perform(request)))

    while data := await reader.read(65536):
        for request in _requests(frames, data, writer):
            task = asyncio.create_task(answer(request))
            running.add(task)
            task.add_done_callback(running.discard)
    await asyncio.gather(*running, return_exceptions=True)
    await actuators.close()
    writer.close()


def _requests(frames: FrameReader, data: bytes, writer: asyncio.StreamWriter) -> list[WriteRequest]:
    """The whole requests in data; anything else is answered with an error outcome of id 0."""
    found: list[WriteRequest] = []
    try:
        for payload in frames.feed(data):
            try:
                message = decode(payload)
            except FrameError as exc:
                _refuse(writer, str(exc))
                continue
            if isinstance(message, WriteRequest):
                found.append(message)
            else:
                _refuse(writer, f"not a request: {type(message).__name__}")
    except FrameError as exc:
        _refuse(writer, str(exc))
    return found


def _refuse(writer: asyncio.StreamWriter, reason: str) -> None:
    log.warning("actuator process: refused a frame: %s", reason)
    writer.write(encode(WriteOutcome(0, "error", f"bad frame: {reason}")))


def _realtime(priority: int) -> None:
    """Ask for SCHED_FIFO at `priority` (0: stay normal); a refusal is a WARNING, not a stop."""
    if priority <= 0:
        return
    try:
        os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(priority))
    except (PermissionError, OSError) as exc:
        log.warning("actuator process: real-time priority %d refused (%s): runs at normal "
                    "priority", priority, exc)


def _target(text: str) -> tuple[str, int, float]:
    host, port, timeout = text.rsplit(":", 2)
    return host, int(port), float(timeout)


def main(argv: list[str] | None = None) -> int:
    """Serve the inherited socket until it closes."""
    parser = argparse.ArgumentParser(description="Tandem's actuator process (started by the "
                                                 "gateway)")
    parser.add_argument("--fd", type=int, required=True, help="inherited socketpair end")
    parser.add_argument("--target", type=_target, action="append", default=[],
                        help="host:port:timeout_s to connect at start (repeatable)")
    parser.add_argument("--priority", type=int, default=0,
                        help="SCHED_FIFO priority 1-99 (0: normal scheduling)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # Only the gateway ends this process, by closing its end once its own stop has drained
    # the stops in flight; Ctrl-C or a SIGTERM to the whole group must not cut them short.
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, signal.SIG_IGN)
    _realtime(args.priority)
    asyncio.run(serve(socket.socket(fileno=args.fd), args.target))
    return 0


if __name__ == "__main__":
    sys.exit(main())
