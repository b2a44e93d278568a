"""The gateway's side of the actuator process: start it, hand it stops, take its outcomes.

`ActuatorProcess.run` is a supervised gateway task: it starts the child
(gateway/modbus/actuatorproc.py) on a Unix socketpair and returns when told
to stop; if the child dies it fails every request in flight with an error
outcome, logs a WARNING, counts the exit and raises, so the supervisor
restarts it with backoff (and /health shows the task in backoff meanwhile).
A stop that fails that way, or is asked for while the child is down, is
re-asserted by the reflex until verified, as for an unreachable controller.

`send` is synchronous and never blocks: the reflex calls it from the ingress
observer, so the request is in the socket before the gateway's loop runs
anything else; the outcome is read on the gateway's loop by a reader
callback. Requests in flight are bounded (MAX_IN_FLIGHT); beyond that a
request fails at once with a clear error rather than queueing.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import socket
import sys
import time
from collections.abc import Awaitable, Callable, Iterable
from pathlib import Path

from prometheus_client import CollectorRegistry, Counter, Gauge

from tandem.gateway.actuator import ActuatorError, ActuatorPort, Attempt, PortFactory
from tandem.gateway.modbus.actuatorwire import (
    FrameError,
    FrameReader,
    Ready,
    Table,
    WriteOutcome,
    WriteRequest,
    decode,
    encode,
)
from tandem.gateway.modbus.metrics import ModbusMetrics
from tandem.gateway.modbus.service import ModbusService

log = logging.getLogger(__name__)

MAX_IN_FLIGHT = 256
READY_TIMEOUT_S = 30.0  # a cold interpreter importing pymodbus on a loaded 2-core machine
DRAIN_TIMEOUT_S = 5.0  # on stop: the child answers what is in flight, then exits
Target = tuple[str, int, float]


class ActuatorProcessDied(RuntimeError):
    """The child exited without being asked to (the supervisor restarts it)."""


class ActuatorProcessMetrics:
    """Whether the child runs, how often it died, requests by outcome."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        r = registry or CollectorRegistry(auto_describe=True)
        self.up = Gauge("tandem_gw_actuator_process_up",
                        "1 while the actuator process takes requests", registry=r)
        self.exits = Counter("tandem_gw_actuator_process_exits",
                             "Times the actuator process died unasked (then restarted)",
                             registry=r)
        self.requests = Counter("tandem_gw_actuator_process_requests",
                                "Requests by outcome (verified, mismatch, error, down, full)",
                                ["result"], registry=r)


class ActuatorProcess:
    """One child process serving every process-mode emergency stop of the gateway."""

    def __init__(self, metrics: ActuatorProcessMetrics | None = None, priority: int = 0,
                 command: Iterable[str] = (sys.executable, "-m",
                                           "tandem.gateway.modbus.actuatorproc")) -> None:
        self.metrics = metrics or ActuatorProcessMetrics()
        self.command = [*command, f"--priority={priority}"]
        self.targets: set[Target] = set()  # connected by the child at each start
        self.pid = 0
        self.ready = asyncio.Event()
        self._ids = itertools.count(1)
        self._pending: dict[int, asyncio.Future[WriteOutcome]] = {}
        self._sock: socket.socket | None = None
        self._unsent = bytearray()
        self._frames = FrameReader()
        self._eof = asyncio.Event()

    def send(self, host: str, port: int, timeout_s: float, table: Table, unit: int,
             address: int, value: int) -> asyncio.Future[WriteOutcome]:
        """Hand a write + read-back to the child now; its outcome arrives on this loop."""
        future: asyncio.Future[WriteOutcome] = asyncio.get_running_loop().create_future()
        request = WriteRequest(next(self._ids), host, port, float(timeout_s), unit, table,
                               address, value)
        if self._sock is None:
            return self._settled(future, request.id, "down", "actuator process is not running")
        if len(self._pending) >= MAX_IN_FLIGHT:
            return self._settled(future, request.id, "full",
                                 f"actuator process has {MAX_IN_FLIGHT} requests in flight")
        self._pending[request.id] = future
        self._write(encode(request))
        return future

    def _settled(self, future: asyncio.Future[WriteOutcome], request_id: int, result: str,
                 error: str) -> asyncio.Future[WriteOutcome]:
        self.metrics.requests.labels(result=result).inc()
        future.set_result(WriteOutcome(request_id, "error", error,
                                       done_ns=time.perf_counter_ns()))
        return future

    def _write(self, frame: bytes) -> None:
        """Send now; what the socket does not take waits in `_unsent` for it to drain."""
        assert self._sock is not None
        if not self._unsent:
            try:
                sent = self._sock.send(frame)
            except BlockingIOError:
                sent = 0
            except OSError:  # the child is gone: its exit fails the pending requests
                return
            frame = frame[sent:]
            if not frame:
                return
            asyncio.get_running_loop().add_writer(self._sock, self._flush)
        self._unsent += frame

    def _flush(self) -> None:
        assert self._sock is not None
        try:
            sent = self._sock.send(self._unsent)
        except BlockingIOError:
            return
        except OSError:
            sent = len(self._unsent)
        del self._unsent[:sent]
        if not self._unsent:
            asyncio.get_running_loop().remove_writer(self._sock)

    async def run(self, stop: asyncio.Event) -> None:
        """Run the child until stop; raise ActuatorProcessDied when it dies unasked."""
        loop = asyncio.get_running_loop()
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        ours.setblocking(False)
        targets = [f"--target={h}:{p}:{t:g}" for h, p, t in sorted(self.targets)]
        try:
            child = await asyncio.create_subprocess_exec(
                *self.command, f"--fd={theirs.fileno()}", *targets, pass_fds=(theirs.fileno(),),
                cwd=Path(__file__).resolve().parents[2], stdin=asyncio.subprocess.DEVNULL)
        finally:
            theirs.close()
        self._sock, self._frames, self._eof = ours, FrameReader(), asyncio.Event()
        loop.add_reader(ours, self._readable)
        try:
            await self._until_exit_or_stop(child, stop)
        finally:
            await self._end(child, loop)
        if not stop.is_set():
            self.metrics.exits.inc()
            log.warning("actuator process %d exited (code %s): restarting; stops meanwhile are "
                        "re-asserted", child.pid, child.returncode)
            raise ActuatorProcessDied(f"actuator process exited with code {child.returncode}")

    async def _until_exit_or_stop(self, child: asyncio.subprocess.Process,
                                  stop: asyncio.Event) -> None:
        exited = asyncio.ensure_future(child.wait())
        stopping = asyncio.ensure_future(stop.wait())
        try:
            await asyncio.wait({exited, stopping}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopping.cancel()
        if not exited.done():  # asked to stop: close our end, the child drains and exits
            assert self._sock is not None
            with contextlib.suppress(OSError):
                self._sock.shutdown(socket.SHUT_WR)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(exited), DRAIN_TIMEOUT_S)
        exited.cancel()

    async def _end(self, child: asyncio.subprocess.Process,
                   loop: asyncio.AbstractEventLoop) -> None:
        """Kill the child if it still runs, read its last answers, fail the rest."""
        if child.returncode is None:
            log.warning("actuator process %d did not exit in %.0f s: killed", child.pid,
                        DRAIN_TIMEOUT_S)
            child.kill()
            await child.wait()
        with contextlib.suppress(TimeoutError):  # its last outcomes may still be in the socket
            await asyncio.wait_for(self._eof.wait(), 1.0)
        sock, self._sock = self._sock, None
        assert sock is not None
        loop.remove_reader(sock)
        loop.remove_writer(sock)
        sock.close()
        self._unsent.clear()
        self.ready.clear()
        self.metrics.up.set(0)
        pending, self._pending = self._pending, {}
        for request_id, future in pending.items():
            if not future.done():
                self.metrics.requests.labels(result="error").inc()
                future.set_result(WriteOutcome(
                    request_id, "error", f"actuator process exited (code {child.returncode}) "
                    "before answering", done_ns=time.perf_counter_ns()))

    def _readable(self) -> None:
        assert self._sock is not None
        try:
            data = self._sock.recv(65536)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            asyncio.get_running_loop().remove_reader(self._sock)
            self._eof.set()
            return
        try:
            for payload in self._frames.feed(data):
                self._take(payload)
        except FrameError as exc:
            log.warning("actuator process sent an unreadable frame: %s", exc)

    def _take(self, payload: bytes) -> None:
        try:
            message = decode(payload)
        except FrameError as exc:
            log.warning("actuator process sent an unreadable frame: %s", exc)
            return
        if isinstance(message, Ready):
            self.pid = message.pid
            self.metrics.up.set(1)
            self.ready.set()
        elif isinstance(message, WriteOutcome):
            self._answer(message)

    def _answer(self, outcome: WriteOutcome) -> None:
        future = self._pending.pop(outcome.id, None)
        if future is None:  # id 0: the child refused a frame it could not read
            log.warning("actuator process: %s", outcome.error or f"unknown id {outcome.id}")
            return
        self.metrics.requests.labels(result=outcome.result).inc()
        if not future.done():
            future.set_result(outcome)


class ProcessPort:
    """An `ActuatorPort` whose writes the actuator process performs (one per controller).

    `hand_over` is the reflex's synchronous path; `write_coil`/`write_register`
    serve everything else (re-assertions, tools). Outcomes count in the Modbus
    write metrics under the labels the bus coordinator would use.
    """

    def __init__(self, process: ActuatorProcess, host: str, port: int, timeout_s: float,
                 metrics: ModbusMetrics, bus: str = "",
                 unit_names: Callable[[int], str] = str) -> None:
        self.process = process
        self.host, self.port, self.timeout_s = host, port, timeout_s
        self.metrics = metrics
        self.bus = bus or f"{host}:{port}"
        self.unit_names = unit_names
        process.targets.add((host, port, timeout_s))

    def hand_over(self, table: Table, unit: int, address: int, value: int) -> Awaitable[Attempt]:
        """Send the request now; await the result as (verified, error, child's done stamp)."""
        sent = self.process.send(self.host, self.port, self.timeout_s, table, unit, address,
                                 value)
        return self._attempt(unit, sent)

    async def _attempt(self, unit: int, sent: asyncio.Future[WriteOutcome]) -> Attempt:
        outcome = await sent
        self.metrics.writes.labels(self.bus, self.unit_names(unit),
                                   "failed" if outcome.result == "error" else outcome.result
                                   ).inc()
        return outcome.result == "verified", outcome.error, \
            outcome.done_ns or time.perf_counter_ns()

    async def write_coil(self, unit: int, address: int, value: bool) -> bool:
        """Set one coil, read it back (in the actuator process)."""
        return _verdict(await self.hand_over("coil", unit, address, int(bool(value))))

    async def write_register(self, unit: int, address: int, value: int) -> bool:
        """Set one holding register, read it back (in the actuator process)."""
        return _verdict(await self.hand_over("register", unit, address, value & 0xFFFF))

    async def close(self) -> None:
        """Nothing to release here: the connections are the child's, closed with it."""


def _verdict(attempt: Attempt) -> bool:
    ok, error, _ = attempt
    if error:
        raise ActuatorError(error)
    return ok


def process_ports(process: ActuatorProcess, service: ModbusService
                  ) -> tuple[PortFactory, dict[str, ActuatorPort]]:
    """`ActuatorPorts`' factory and buses in process mode: every Modbus TCP address, a
    configured bus or not, writes through `process`; an RTU bus keeps its coordinator (a
    serial line has one owner: the bus's poller on the field-bus thread)."""
    tcp = {(c.bus.host, c.bus.tcp_port): c for c in service.coordinators.values()
           if c.bus.kind == "tcp"}

    def factory(host: str, port: int, timeout_s: float) -> ActuatorPort:
        coordinator = tcp.get((host, port))
        if coordinator is None:
            return ProcessPort(process, host, port, timeout_s, service.metrics)
        names = {u.config.unit_id: u.config.name for u in coordinator.units}
        return ProcessPort(process, host, port, timeout_s, service.metrics,
                           coordinator.bus.name, lambda unit: names.get(unit, str(unit)))

    buses: dict[str, ActuatorPort] = {
        name: factory(c.bus.host, c.bus.tcp_port, c.bus.timeout_s) if c.bus.kind == "tcp"
        else c for name, c in service.coordinators.items()}
    return factory, buses
