"""One coordinator per Modbus bus: its connections (lanes), a lock each, a pause between frames.

Every request goes through `_exchange_locked` under its lane's lock, so polls
and verified writes (the rule engine's emergency stop, always on lane 0) never
interleave frames, and the configured inter-frame silence is kept. An RTU line
is one lane. A TCP bus opens `connections` lanes for answering units (unit i
on lane i mod n) plus one more, opened on first need, for units that stopped
answering: their timeouts queue only behind each other, never in front of a
live unit. Each unit is polled by a task of its own on its own schedule with
its own timeout; a unit that stops answering backs off exponentially (up to
the bus's backoff_max_s). Poll results become `DeviceReport`s for the same
ReportSink as CoAP, device id "<bus>/<unit name>"; the poller hands them over
without waiting for the sink's fsync (the ingress commits them in groups), so
a poll never waits on the disk writes of earlier ones.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from pymodbus.client.base import ModbusBaseClient
from pymodbus.exceptions import ConnectionException, ModbusException

from tandem.gateway.actuator import ActuatorError
from tandem.gateway.modbus.clients import inter_frame_s, make_client
from tandem.gateway.modbus.codec import Block, DecodeError, plan_reads
from tandem.gateway.modbus.config import ModbusBus, ModbusUnit
from tandem.gateway.modbus.metrics import ModbusMetrics, RateLimitedLog
from tandem.gateway.modbus.registers import Point, RegisterMap, Table, load_register_map
from tandem.gateway.reports import DeviceReport, ReportSink
from tandem.wire.clock import now_ms
from tandem.wire.report import Report

Clock = Callable[[], float]
# A verified write that lost its connection is reconnected and tried once more, at once.
_RECONNECT_CAUSES = frozenset({"connect", "io"})
# Reports handed to the sink and not yet answered, per bus: beyond this a poll's report is
# refused (counted as sink_full) rather than queued without bound.
MAX_SUBMITTING = 10_000


@dataclass
class Lane:
    """One connection of a bus: its client, its lock and when its last frame ended."""

    client: ModbusBaseClient
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    last_frame: float = float("-inf")


class RequestError(Exception):
    """A request that got no usable answer; `cause` labels metrics and logs."""

    def __init__(self, cause: str, detail: str = "") -> None:
        super().__init__(f"{cause}: {detail}" if detail else cause)
        self.cause = cause

    @property
    def unit_alive(self) -> bool:
        """Exceptions 01-03 (a map that does not fit) prove the unit answers: no backoff.

        04 (device failure) and 0A/0B (a TCP gateway's target did not answer) do not.
        """
        return self.cause in ("exception_01", "exception_02", "exception_03")


@dataclass
class UnitState:
    """A unit's schedule, backoff and latest values."""

    config: ModbusUnit
    regmap: RegisterMap
    device: str
    timeout_s: float
    next_point: dict[str, float] = field(default_factory=dict)
    next_due: float = 0.0
    failures: int = 0
    backoff_s: float = 0.0
    polls: int = 0  # successful
    failed: int = 0
    skipped: int = 0  # scheduled polls not made during backoff
    seq: int = 0
    boot: int = field(default_factory=lambda: int.from_bytes(os.urandom(4), "big"))
    values: dict[str, float] = field(default_factory=dict)

    def period(self, point: Point) -> float:
        """How often a point is read."""
        return point.poll_s or self.config.poll_s


_READERS: dict[Table, str] = {Table.COIL: "read_coils", Table.DISCRETE: "read_discrete_inputs",
                              Table.HOLDING: "read_holding_registers",
                              Table.INPUT: "read_input_registers"}


class BusCoordinator:
    """Polls the units of one bus and serves verified writes (an `ActuatorPort`)."""

    def __init__(self, bus: ModbusBus, sink: ReportSink, metrics: ModbusMetrics | None = None,
                 client: ModbusBaseClient | None = None, clock: Clock = time.monotonic,
                 maps: dict[str, RegisterMap] | None = None) -> None:
        self.bus = bus
        self.sink = sink
        self.metrics = metrics or ModbusMetrics()
        self._client = client  # lane 0's; made on first use, in the loop that runs the bus
        self.clock = clock
        self.inter_frame_s = inter_frame_s(bus)
        self.lock = asyncio.Lock()  # lane 0's: polls on it and every verified write
        self.errors = RateLimitedLog(clock=clock)
        self._lanes: list[Lane] = []
        self._suspect: Lane | None = None
        self._submitting: set[asyncio.Task[None]] = set()
        self.submitted = {"accepted": 0, "sink_full": 0}
        # perf_counter_ns when the controller acknowledged the last verified write (the
        # actuator process reports it beside the read-back's stamp).
        self.written_ns = 0
        cache = {} if maps is None else maps
        self.units = [self._unit(u, cache) for u in bus.units]

    def _unit(self, unit: ModbusUnit, cache: dict[str, RegisterMap]) -> UnitState:
        key = str(unit.map)
        if key not in cache:
            cache[key] = load_register_map(unit.map)
        return UnitState(unit, cache[key], f"{self.bus.name}/{unit.name}",
                         unit.timeout_s or self.bus.timeout_s)

    @property
    def client(self) -> ModbusBaseClient:
        """Lane 0's pymodbus client (it binds to the running loop, so it is made on first use)."""
        return self.lanes[0].client

    @property
    def lanes(self) -> list[Lane]:
        """The connections for answering units (made on first use)."""
        if not self._lanes:
            first = Lane(self._client or make_client(self.bus), self.lock)
            count = self.bus.connections if self.bus.kind == "tcp" else 1
            self._lanes = [first] + [Lane(make_client(self.bus)) for _ in range(count - 1)]
        return self._lanes

    def lane_for(self, unit: UnitState) -> Lane:
        """A unit's connection: its own lane while it answers, the suspects' lane (TCP) if not."""
        if unit.failures and self.bus.kind == "tcp":
            if self._suspect is None:
                self._suspect = Lane(make_client(self.bus))
            return self._suspect
        return self.lanes[self.units.index(unit) % len(self.lanes)]

    def unit(self, name: str) -> UnitState:
        """The state of the unit called name."""
        return next(u for u in self.units if u.config.name == name)

    # -- polling ----------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        """Poll every unit when due (a task each) until stop is set; then let the sink answer."""
        if not self.units:
            return
        stopped = asyncio.ensure_future(stop.wait())
        try:
            await asyncio.gather(*(self._poll_loop(unit, stopped) for unit in self.units))
        finally:
            stopped.cancel()
            await self.drain()

    async def _poll_loop(self, unit: UnitState, stopped: asyncio.Future[Any]) -> None:
        while not stopped.done():
            wait = unit.next_due - self.clock()
            if wait > 0:
                await asyncio.wait([stopped], timeout=wait)
                continue
            report = await self.read_unit(unit)
            if report is not None:
                self._hand_over(unit, report)

    def _hand_over(self, unit: UnitState, report: DeviceReport) -> None:
        """Submit without waiting for the answer (the ingress's group commit); bounded."""
        if len(self._submitting) >= MAX_SUBMITTING:
            self._refused(unit)
            return
        task = asyncio.create_task(self._deliver(unit, report))
        self._submitting.add(task)
        task.add_done_callback(self._submitting.discard)

    async def drain(self) -> None:
        """Wait until the sink has answered every report handed to it."""
        while self._submitting:
            await asyncio.gather(*self._submitting, return_exceptions=True)

    async def poll(self, unit: UnitState) -> bool:
        """Read the unit's due points, submit the report (awaiting the sink); False if failed."""
        failed_before = unit.failed
        report = await self.read_unit(unit)
        if report is not None:
            await self._deliver(unit, report)
        return unit.failed == failed_before

    async def _deliver(self, unit: UnitState, report: DeviceReport) -> None:
        try:
            accepted = await self.sink.submit(report)
        except Exception:  # noqa: BLE001 - a failing sink refuses; the poller carries on
            accepted = False
        if accepted:
            self.submitted["accepted"] += 1
        else:
            self._refused(unit)

    def _refused(self, unit: UnitState) -> None:
        self.submitted["sink_full"] += 1
        self._count(unit, "sink_full", "the pipeline refused a report")

    async def read_unit(self, unit: UnitState) -> DeviceReport | None:
        """Read the unit's due points: the report to submit, None if failed or nothing to say."""
        now = self.clock()
        due = [p for p in unit.regmap.points if unit.next_point.get(p.name, 0.0) <= now]
        started = time.perf_counter()
        try:
            values: dict[str, float] = {}
            for block in plan_reads(due):
                values.update(await self._read(unit, block))
        except RequestError as exc:
            self._failed(unit, exc, now)
            return None
        self.metrics.latency.labels(self.bus.name).observe(time.perf_counter() - started)
        return self._succeeded(unit, due, values, now)

    async def read_now(self, unit: UnitState) -> dict[str, float]:
        """Every point of the unit, off schedule (the installer's "read now"); RequestError.

        Same lanes and locks as the polls, so it never interleaves their frames; the
        unit's schedule, backoff and reports are left as they are.
        """
        values: dict[str, float] = {}
        for block in plan_reads(list(unit.regmap.points)):
            values.update(await self._read(unit, block))
        return values

    async def _read(self, unit: UnitState, block: Block) -> dict[str, float]:
        lane = self.lane_for(unit)
        method = getattr(lane.client, _READERS[block.table])
        async with lane.lock:
            response = await self._exchange_locked(
                unit.timeout_s,
                lambda: method(block.start, count=block.count, device_id=unit.config.unit_id),
                lane)
        data = response.bits if block.table.is_bits else response.registers
        try:
            return block.values(data)
        except DecodeError as exc:
            raise RequestError("decode", str(exc)) from None

    def _succeeded(self, unit: UnitState, due: list[Point], values: dict[str, float],
                   now: float) -> DeviceReport | None:
        unit.polls += 1
        unit.failures = 0
        unit.backoff_s = 0.0
        for p in due:  # on a fixed grid: the poll's own latency must not stretch the period
            slot = unit.next_point.get(p.name, now) + unit.period(p)
            unit.next_point[p.name] = slot if slot > now else now + unit.period(p)
        unit.next_due = min(unit.next_point.values(), default=now + unit.config.poll_s)
        unit.values.update(values)
        self.metrics.polls.labels(self.bus.name, unit.config.name, "ok").inc()
        self.metrics.backoff.labels(self.bus.name, unit.config.name).set(0)
        reported = {p.name: values[p.name] for p in due if p.report and p.name in values}
        if not reported:
            return None
        unit.seq += 1
        report = Report(unit.seq, unit.boot, 0, reported)
        return DeviceReport(unit.device, report, now_ms())

    def _failed(self, unit: UnitState, exc: RequestError, now: float) -> None:
        unit.failed += 1
        self._count(unit, exc.cause, str(exc))
        if exc.unit_alive:  # answered with an exception: keep the schedule
            self.metrics.polls.labels(self.bus.name, unit.config.name, "exception").inc()
            unit.next_due = now + unit.config.poll_s
            return
        self.metrics.polls.labels(self.bus.name, unit.config.name, "failed").inc()
        unit.failures += 1
        base = max(unit.config.poll_s, unit.timeout_s)
        unit.backoff_s = min(base * 2 ** (unit.failures - 1), self.bus.backoff_max_s)
        unit.skipped += max(0, int(unit.backoff_s / unit.config.poll_s) - 1)
        unit.next_due = now + unit.backoff_s
        self.metrics.backoff.labels(self.bus.name, unit.config.name).set(unit.backoff_s)

    def _count(self, unit: UnitState, cause: str, detail: str) -> None:
        self.metrics.errors.labels(self.bus.name, unit.config.name, cause).inc()
        self.errors.error((self.bus.name, unit.config.name, cause),
                          f"modbus {unit.device} (unit {unit.config.unit_id}): {detail}")

    # -- verified writes: the ActuatorPort (gateway/actuator.py) of every emergency stop --

    async def write_coil(self, unit: int, address: int, value: bool) -> bool:
        """Write one coil (FC05), read it back (FC01); True when it reads as written."""
        return await self._verified(
            unit, "coil",
            lambda: self.client.write_coil(address, bool(value), device_id=unit),
            lambda: self.client.read_coils(address, count=1, device_id=unit),
            lambda r: bool(r.bits[0]) == bool(value))

    async def write_register(self, unit: int, address: int, value: int) -> bool:
        """Write one holding register (FC06), read it back (FC03)."""
        return await self._verified(
            unit, "register",
            lambda: self.client.write_register(address, value & 0xFFFF, device_id=unit),
            lambda: self.client.read_holding_registers(address, count=1, device_id=unit),
            lambda r: int(r.registers[0]) == value & 0xFFFF)

    async def _verified(self, unit_id: int, what: str, write: Callable[[], Awaitable[Any]],
                        read: Callable[[], Awaitable[Any]], check: Callable[[Any], bool]) -> bool:
        """Write and read back under the bus lock; ActuatorError when no usable answer."""
        unit = next((u for u in self.units if u.config.unit_id == unit_id), None)
        name = unit.config.name if unit else str(unit_id)
        timeout = unit.timeout_s if unit else self.bus.timeout_s
        for attempt in (1, 2):
            try:
                async with self.lock:  # write and read-back back to back, nothing between
                    await self._exchange_locked(timeout, write)
                    self.written_ns = time.perf_counter_ns()
                    ok = check(await self._exchange_locked(timeout, read))
                break
            except RequestError as exc:
                self.metrics.errors.labels(self.bus.name, name, exc.cause).inc()
                if attempt == 1 and exc.cause in _RECONNECT_CAUSES:
                    continue
                self.metrics.writes.labels(self.bus.name, name, "failed").inc()
                self.errors.error((self.bus.name, name, "write", exc.cause),
                                  f"modbus {self.bus.name} unit {unit_id}: {what} write: {exc}")
                raise ActuatorError(f"modbus {self._where()} unit {unit_id}: {what} write: "
                                    f"{exc}") from None
        self.metrics.writes.labels(self.bus.name, name, "verified" if ok else "mismatch").inc()
        return ok

    # -- the bus -------------------------------------------------------------------

    async def exchange(self, timeout_s: float, request: Callable[[], Awaitable[Any]]) -> Any:
        """One request/response under the bus lock; RequestError unless a normal response."""
        async with self.lock:
            return await self._exchange_locked(timeout_s, request)

    async def _exchange_locked(self, timeout_s: float, request: Callable[[], Awaitable[Any]],
                               lane: Lane | None = None) -> Any:
        lane = lane or self.lanes[0]
        client = lane.client
        if not client.connected and not await client.connect():
            raise RequestError("connect", f"cannot open {self._where()}")
        gap = lane.last_frame + self.inter_frame_s - self.clock()
        if gap > 0:
            await asyncio.sleep(gap)
        # This unit's timeout; the transaction manager holds its own copy of CommParams.
        client.ctx.comm_params.timeout_connect = timeout_s
        try:
            response = await request()
        except ConnectionException as exc:
            client.close()
            raise RequestError("connect", str(exc)) from None
        except ModbusException as exc:  # ModbusIOException: no (valid) answer in time
            raise RequestError("timeout", str(exc)) from None
        except OSError as exc:
            client.close()
            raise RequestError("io", str(exc)) from None
        finally:
            lane.last_frame = self.clock()
        if response.isError():
            code = int(getattr(response, "exception_code", 0))
            raise RequestError(f"exception_{code:02d}", f"exception response {code}")
        return response

    def _where(self) -> str:
        return self.bus.port if self.bus.kind == "rtu" else f"{self.bus.host}:{self.bus.tcp_port}"

    async def close(self) -> None:
        """Close every connection (the ActuatorPort's close too)."""
        for lane in [*self._lanes, *([self._suspect] if self._suspect else [])]:
            lane.client.close()
