"""Specification of the actuator process: emergency stops written and read back by a child.

Every test runs the real child (`python -m tandem.gateway.modbus.actuatorproc`)
against pymodbus's own Modbus TCP server on loopback, and checks the coil
with a client of its own.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry
from pymodbus.client import AsyncModbusTcpClient

from tandem.gateway.actuator import ActuatorError
from tandem.gateway.metrics import GatewayMetrics
from tandem.gateway.modbus.actuatorclient import (
    ActuatorProcess,
    ActuatorProcessMetrics,
    ProcessPort,
)
from tandem.gateway.modbus.actuatorwire import (
    FrameReader,
    Ready,
    WriteOutcome,
    WriteRequest,
    decode,
    encode,
)
from tandem.gateway.modbus.metrics import ModbusMetrics
from tandem.gateway.reports import DeviceReport
from tandem.gateway.rules.actions import ActuatorPorts
from tandem.gateway.rules.loader import parse_rules_text
from tandem.gateway.rules.reflex import Outcome, Reflex
from tandem.gateway.supervisor import RestartPolicy, Supervisor, SupervisorMetrics
from tandem.tools.modbus_sim import modbus_controller
from tandem.wire.batch import Record
from tandem.wire.report import Report
from tests.waiting import until

pytestmark = pytest.mark.timeout(120)
REPO = Path(__file__).resolve().parents[2]
READY_S = 60.0  # a cold interpreter on a loaded 2-core machine

RULES = """\
version = 1
[action.stop_press]
kind = "emergency_stop"
host = "127.0.0.1"
port = {port}
coil = 5
[[rule]]
name = "overheat"
when = {{ input = "temp", above = 80.0, clear_below = 75.0 }}
actions = ["stop_press"]
"""


class _Store:
    def __init__(self) -> None:
        self.records: list[Record] = []

    async def put(self, records: list[Record], priority: object) -> None:
        self.records.extend(records)


@asynccontextmanager
async def supervised(process: ActuatorProcess,
                     supervisor: Supervisor | None = None) -> AsyncIterator[Supervisor]:
    """The child running as the gateway runs it (a supervised task); stopped on the way out."""
    supervisor = supervisor or Supervisor(SupervisorMetrics(CollectorRegistry()),
                                          RestartPolicy(backoff_s=0.05, backoff_max_s=0.2))
    stop = asyncio.Event()
    task = supervisor.spawn("actuator-process", lambda: process.run(stop))
    try:
        await until(process.ready.is_set, "the actuator process to be ready", READY_S)
        yield supervisor
    finally:
        supervisor.stop_restarts()
        stop.set()
        await task


async def coil(port: int, address: int) -> bool:
    """One coil as a separate client reads it (not the actuator's connection)."""
    client = AsyncModbusTcpClient("127.0.0.1", port=port, timeout=2, retries=0)
    try:
        assert await client.connect()
        reply = await client.read_coils(address, count=1, device_id=1)
        assert not reply.isError(), reply
        return bool(reply.bits[0])
    finally:
        client.close()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_a_real_child_writes_a_coil_and_reads_it_back_and_stamps_it_on_the_shared_clock(
        ) -> None:
    async def scenario() -> None:
        async with modbus_controller() as port:
            modbus = ModbusMetrics()
            process = ActuatorProcess()
            stop_port = ProcessPort(process, "127.0.0.1", port, 1.0, modbus)
            async with supervised(process):
                pid = process.pid
                assert pid != os.getpid() and _alive(pid)
                sent = time.perf_counter_ns()
                attempt = await stop_port.hand_over("coil", 1, 3, 1)
                received = time.perf_counter_ns()
                assert attempt[:2] == (True, "")
                assert sent < attempt[2] < received  # the child's stamp, on the same clock
                assert await coil(port, 3) is True
                assert await stop_port.write_register(1, 2, 1234) is True
            assert not _alive(pid), "the child must exit when the gateway stops it"
            assert modbus.writes.labels(f"127.0.0.1:{port}", "1", "verified")._value.get() == 2
            assert process.metrics.requests.labels(result="verified")._value.get() == 2
            assert process.metrics.up._value.get() == 0

    asyncio.run(scenario())


def test_an_exception_code_is_an_error_outcome_naming_it_and_the_child_keeps_serving() -> None:
    async def scenario() -> None:
        async with modbus_controller() as port:
            process = ActuatorProcess()
            stop_port = ProcessPort(process, "127.0.0.1", port, 1.0, ModbusMetrics())
            async with supervised(process) as supervisor:
                with pytest.raises(ActuatorError, match="exception_02"):
                    await stop_port.write_coil(1, 1000, True)  # the server has 64 coils
                assert await stop_port.write_coil(1, 4, True) is True
                assert supervisor.status()["actuator-process"].restarts == 0

    asyncio.run(scenario())


def test_a_controller_that_is_away_is_an_error_outcome_not_a_hang() -> None:
    async def scenario() -> None:
        with socket.socket() as probe:  # a port nobody listens on
            probe.bind(("127.0.0.1", 0))
            dead = probe.getsockname()[1]
        process = ActuatorProcess()
        stop_port = ProcessPort(process, "127.0.0.1", dead, 0.3, ModbusMetrics())
        async with supervised(process):
            ok, error, _ = await stop_port.hand_over("coil", 1, 0, 1)
            assert not ok and "connect" in error, error

    asyncio.run(scenario())


def test_a_child_killed_with_sigkill_is_restarted_and_the_next_stop_is_verified(
        caplog: pytest.LogCaptureFixture) -> None:
    async def scenario() -> None:
        async with modbus_controller() as port:
            metrics = ActuatorProcessMetrics(CollectorRegistry())
            process = ActuatorProcess(metrics)
            stop_port = ProcessPort(process, "127.0.0.1", port, 1.0, ModbusMetrics())
            async with supervised(process) as supervisor:
                first = process.pid
                assert await stop_port.write_coil(1, 6, True) is True
                os.kill(first, signal.SIGKILL)
                await until(lambda: metrics.exits._value.get() == 1, "the exit to be counted")
                assert metrics.up._value.get() == 0
                await until(lambda: process.ready.is_set() and process.pid != first,
                            "a new child", READY_S)
                assert supervisor.status()["actuator-process"].restarts == 1
                assert await stop_port.write_coil(1, 7, True) is True
                assert await coil(port, 7) is True

    with caplog.at_level(logging.WARNING):
        asyncio.run(scenario())
    assert any("actuator process" in r.message and "exited" in r.message
               and r.levelno == logging.WARNING for r in caplog.records)


def test_a_stop_while_the_child_is_down_is_reasserted_until_verified() -> None:
    async def scenario() -> None:
        async with modbus_controller() as port:
            process = ActuatorProcess()
            outcomes: list[Outcome] = []
            metrics = GatewayMetrics()
            reflex = Reflex(parse_rules_text(RULES.format(port=port)), _Store(), metrics,
                            on_outcome=outcomes.append, reassert_s=0.05, reassert_max_s=0.2,
                            ports=ActuatorPorts(lambda h, p, t: ProcessPort(
                                process, h, p, t, ModbusMetrics())))
            now = time.time_ns() // 1_000_000
            reflex.take(DeviceReport("press-01", Report(1, 1, now, {"temp": 90.0}), now))
            await until(lambda: len(outcomes) == 1, "the first outcome")
            assert not outcomes[0].ok and "not running" in outcomes[0].error
            async with supervised(process):  # the child comes (back): the stop is written
                await until(lambda: reflex.reasserting == 0, "the re-assertion to succeed",
                            READY_S)
                assert await coil(port, 5) is True
            await reflex.close()
            assert metrics.safety_reasserts.labels(action="stop_press",
                                                   result="ok")._value.get() == 1

    asyncio.run(scenario())


def test_the_reflex_hands_a_stop_to_the_child_before_its_loop_runs_anything_else() -> None:
    async def scenario() -> None:
        async with modbus_controller() as port:
            process = ActuatorProcess()
            outcomes: list[Outcome] = []
            reflex = Reflex(parse_rules_text(RULES.format(port=port)), _Store(),
                            GatewayMetrics(), on_outcome=outcomes.append,
                            ports=ActuatorPorts(lambda h, p, t: ProcessPort(
                                process, h, p, t, ModbusMetrics())))
            async with supervised(process):
                now = time.time_ns() // 1_000_000
                reflex.take(DeviceReport("press-01", Report(1, 1, now, {"temp": 90.0}), now))
                # no await since take(): the request is already in the socket
                assert len(process._pending) == 1
                await until(lambda: len(outcomes) == 1, "the outcome")
                assert outcomes[0].ok, outcomes[0]
                assert outcomes[0].taken_ns < outcomes[0].done_ns
                assert await coil(port, 5) is True
            await reflex.close()

    asyncio.run(scenario())


class _Child:
    """The child started by hand on a socketpair: the gateway's side of the pipe, raw."""

    def __init__(self, *options: str) -> None:
        self.sock, theirs = socket.socketpair()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tandem.gateway.modbus.actuatorproc",
             f"--fd={theirs.fileno()}", *options], pass_fds=(theirs.fileno(),), cwd=REPO,
            stderr=subprocess.PIPE, text=True)
        theirs.close()
        self.sock.settimeout(READY_S)
        self.frames = FrameReader()
        self.backlog: list[bytes] = []

    def next(self) -> object:
        while not self.backlog:
            data = self.sock.recv(65536)
            assert data, "the child closed its end"
            self.backlog += self.frames.feed(data)
        return decode(self.backlog.pop(0))

    def stop(self) -> None:
        self.sock.close()
        try:
            self.proc.wait(10)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()


def test_garbage_on_the_pipe_gets_an_error_outcome_and_the_child_keeps_serving() -> None:
    async def scenario() -> None:
        async with modbus_controller() as port:
            child = _Child()
            try:
                await asyncio.to_thread(_garbage_then_a_stop, child, port)
            finally:
                child.stop()
            assert child.proc.returncode == 0
            assert await coil(port, 9) is True

    asyncio.run(scenario())


def _garbage_then_a_stop(child: _Child, port: int) -> None:
    assert isinstance(child.next(), Ready)
    child.sock.sendall(b"\x00\x00\x00\x03\xff\xfe\xfd")  # a frame whose payload is not CBOR
    refused = child.next()
    assert isinstance(refused, WriteOutcome) and refused.id == 0 and refused.result == "error"
    assert "not CBOR" in refused.error
    child.sock.sendall(b"\xff\xff\xff\xff junk")  # a length no frame has
    refused = child.next()
    assert isinstance(refused, WriteOutcome) and "frame length" in refused.error
    child.sock.sendall(encode(WriteRequest(5, "127.0.0.1", port, 1.0, 1, "coil", 9, 1)))
    answer = child.next()
    assert isinstance(answer, WriteOutcome) and answer.id == 5, answer
    assert answer.result == "verified" and 0 < answer.acked_ns < answer.done_ns


def test_the_child_exits_when_the_gateway_end_closes_so_a_dead_gateway_leaves_no_orphan(
        ) -> None:
    child = _Child()
    try:
        assert isinstance(child.next(), Ready)
        child.proc.send_signal(signal.SIGTERM)  # ignored: only the gateway's close ends it
        child.sock.close()  # what the kernel does when the gateway dies, even by SIGKILL
        assert child.proc.wait(30) == 0
    finally:
        child.stop()


def test_a_priority_asks_for_sched_fifo_and_a_refusal_leaves_it_running_normally() -> None:
    child = _Child("--priority=10")
    try:
        assert isinstance(child.next(), Ready)
        policy = os.sched_getscheduler(child.proc.pid)
        if os.geteuid() == 0:  # CAP_SYS_NICE: granted
            assert policy == os.SCHED_FIFO
            assert os.sched_getparam(child.proc.pid).sched_priority == 10
        else:  # refused: a WARNING, and it still serves
            assert policy == os.SCHED_OTHER
    finally:
        child.stop()
    assert child.proc.returncode == 0
