"""Benchmark of the local reflex: report received -> stop coil written and read back.

Runs the real pipeline task (ingress queue, reflex, windows, outbox on a temp
dir) against pymodbus's own TCP server on loopback, under a background load
of ordinary reports from many devices, and prints latency percentiles:

    tandem bench reflex [--trips 3000] [--rate 1500] [--runs 1]
                        [--actuator process|thread] [--same-loop] [--burn N]

The reflex line is printed beside its limits (issue #14: p99 <= 5 ms,
p99.9 <= 10 ms) with the ratio figure/limit; 3,000 trips make p99.9 the
third-worst value. With `--runs N` each run gets its line and a verdict.

`reflex` is measured from the CoAP handler's `Ingress.submit` of the tripping
report (the reflex observes it there, before the journal commit) to the
moment the controller acknowledged the coil write AND its read-back matched,
stamped where the Modbus I/O ran: `--actuator process` in the actuator
process, gateway/modbus/actuatorproc.py, on the same CLOCK_MONOTONIC;
`--actuator thread` (the default, as the gateway runs unless configured
otherwise) on the field-bus thread,
gateway/modbus/fieldbus.py; `--same-loop` on the gateway's loop as before, for
comparison. `action` is the Modbus part alone (hand-over + write +
read-back). `acked` is submit -> the controller's answer to the write (the
coil is set; the read-back follows), stamped by a bench-only subclass of the
port (thread) or by the child (process): the cost of each to the write-ack
path. `--burn N` keeps N `python -c 'while 1: pass'` processes spinning
during the runs (both cores busy); each run prints the load average.
`taken` is submit -> `Reflex.take` of the tripping report (the gateway loop's
backlog before the reflex sees it: no actuator can be faster than this).
`notified` is submit -> the gateway's loop learning the outcome (what the
outcome event waits for; not on the stop's path). `eval` is one
`Reflex.take` of an ordinary report (features, rules; no firing),
`inference` one model call on 16 band energies (when a LiteRT runtime is
installed).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from tandem.gateway.actuator import ActuatorPort, Attempt, PortFactory
from tandem.gateway.inference.model import ScoringModel, interpreter_class
from tandem.gateway.metrics import GatewayMetrics
from tandem.gateway.modbus.actuatorclient import ActuatorProcess, ProcessPort
from tandem.gateway.modbus.actuatorwire import Table
from tandem.gateway.modbus.coordinator import BusCoordinator
from tandem.gateway.modbus.fieldbus import FieldbusThread
from tandem.gateway.modbus.metrics import ModbusMetrics
from tandem.gateway.modbus.service import actuator_port
from tandem.gateway.pipeline.ingress import Ingress
from tandem.gateway.pipeline.journal import Journal
from tandem.gateway.pipeline.summarise import SummaryPipeline
from tandem.gateway.pipeline.windows import TumblingWindows
from tandem.gateway.reports import DeviceReport
from tandem.gateway.rules.actions import ActuatorPorts
from tandem.gateway.rules.loader import parse_rules_text
from tandem.gateway.rules.reflex import Outcome, Reflex
from tandem.gateway.store.database import DATABASE_FILE, GatewayDatabase
from tandem.gateway.store.outbox import Outbox
from tandem.tools.modbus_sim import modbus_controller
from tandem.wire.clock import now_ms
from tandem.wire.report import Report

FIXTURE = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "anomaly16.tflite"

RULES = """\
version = 1
[features]
window_n = 256
[action.stop_press]
kind = "emergency_stop"
host = "127.0.0.1"
port = {port}
coil = 0
[[rule]]
name = "overheat"
severity = 3
when = {{ input = "temp", above = 80.0, clear_below = 75.0 }}
actions = ["stop_press"]
[[rule]]
name = "vibration"
when = {{ any = [ {{ input = "vib.rms", above = 50.0, clear_below = 40.0 }},
                  {{ input = "vib.crest", above = 20.0 }} ] }}
"""


@dataclass(frozen=True)
class Figures:
    """Percentiles in milliseconds."""

    name: str
    samples: list[float]

    def percentile(self, q: float) -> float:
        """The q-th percentile, ms."""
        return float(np.percentile(np.asarray(self.samples), q))

    def line(self) -> str:
        """One printable line: p50, p99, p99.9, max, count."""
        a = np.asarray(self.samples)
        return (f"{self.name:<10} p50 {self.percentile(50):7.3f} ms  p99 "
                f"{self.percentile(99):7.3f} ms  p99.9 {self.percentile(99.9):7.3f} ms  "
                f"max {a.max():7.3f} ms  (n={len(a)})")

    def verdict(self) -> str:
        """The figures against the reflex's limits, with their ratios; ok or OVER."""
        parts = [f"p{q:g} {self.percentile(q):.3f} / {limit:g} ms = "
                 f"{self.percentile(q) / limit:.2f}" for q, limit in LIMITS_MS]
        ok = all(self.percentile(q) <= limit for q, limit in LIMITS_MS)
        return f"limits: {'; '.join(parts)}: {'ok' if ok else 'OVER'}"


# issue #14 item 2: percentile -> limit, ms, for report -> stop written and read back
LIMITS_MS = ((99.0, 5.0), (99.9, 10.0))


class AckStampingPort(BusCoordinator):
    """The gateway's emergency-stop port (a bus coordinator), plus a stamp when the
    controller answers the write."""

    acked_ns: list[int] = []  # shared by every instance: the bench has one stop at a time

    @classmethod
    def at(cls, host: str, port: int, timeout_s: float) -> AckStampingPort:
        """An ActuatorPorts factory, as gateway/modbus/service.py's actuator_port."""
        plain = actuator_port(host, port, timeout_s)
        return cls(plain.bus, plain.sink)

    async def write_coil(self, unit: int, address: int, value: bool) -> bool:
        """As BusCoordinator.write_coil, stamping the write response."""
        async def stamped_write() -> Any:
            written = await self.client.write_coil(address, bool(value), device_id=unit)
            self.acked_ns.append(time.perf_counter_ns())
            return written

        return await self._verified(
            unit, "coil", stamped_write,
            lambda: self.client.read_coils(address, count=1, device_id=unit),
            lambda r: bool(r.bits[0]) == bool(value))


class AckStampingProcessPort(ProcessPort):
    """The gateway's process-mode stop port, keeping the child's stamp of the write's answer."""

    def hand_over(self, table: Table, unit: int, address: int, value: int) -> Awaitable[Attempt]:
        """As ProcessPort.hand_over, noting the outcome's acked_ns when it arrives."""
        sent = self.process.send(self.host, self.port, self.timeout_s, table, unit, address,
                                 value)
        sent.add_done_callback(lambda f: AckStampingPort.acked_ns.append(f.result().acked_ns))
        return self._attempt(unit, sent)


def process_ports(process: ActuatorProcess) -> PortFactory:
    """An ActuatorPorts factory writing through `process`, as the gateway's process mode."""
    def factory(host: str, port: int, timeout_s: float) -> ActuatorPort:
        return AckStampingProcessPort(process, host, port, timeout_s, ModbusMetrics())

    return factory


@asynccontextmanager
async def actuator_running(process: ActuatorProcess | None) -> AsyncIterator[None]:
    """The actuator process as the gateway runs it (a task until stop), ready; or nothing."""
    if process is None:
        yield
        return
    stop = asyncio.Event()
    task = asyncio.create_task(process.run(stop))
    try:
        await asyncio.wait_for(process.ready.wait(), 60)
        yield
    finally:
        stop.set()
        await task


@contextmanager
def burners(count: int) -> Iterator[None]:
    """`count` processes spinning on a core each (a busy machine), stopped on the way out."""
    procs = [subprocess.Popen([sys.executable, "-c", "while 1: pass"]) for _ in range(count)]
    try:
        yield
    finally:
        for proc in procs:
            proc.kill()
            proc.wait()


@asynccontextmanager
async def controller_process(*options: str, priority: int = 0) -> AsyncIterator[int]:
    """The simulated controller in its own process (a PLC is another machine); yields its port.

    `options` go to tools/modbus_sim.py (e.g. "--units", "100", "--silent"); `priority`
    (SCHED_FIFO, needs root) keeps a busy machine from delaying its answers, as a PLC's
    own CPU would."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tandem.tools.modbus_sim", *options, stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE, cwd=Path(__file__).resolve().parent.parent)
    assert proc.stdin is not None and proc.stdout is not None
    if priority:
        os.sched_setscheduler(proc.pid, os.SCHED_FIFO, os.sched_param(priority))
    try:
        yield int(await asyncio.wait_for(proc.stdout.readline(), 30))
    finally:
        proc.stdin.close()
        try:
            await asyncio.wait_for(proc.wait(), 10)
        except TimeoutError:
            proc.kill()
            await proc.wait()


@dataclass(frozen=True)
class Run:
    """What one benchmark run measured."""

    reflex: Figures
    acked: Figures
    action: Figures
    notified: Figures
    taken: Figures
    achieved_rate: float
    load: tuple[float, float, float]
    io_sched: tuple[float, float]  # the I/O side's ms on a CPU, ms waiting for one, per trip


def sched_ns(tid: int) -> tuple[int, int]:
    """(ns on a CPU, ns runnable but waiting for one) of a thread, from /proc schedstat."""
    fields = Path(f"/proc/{tid}/task/{tid}/schedstat").read_text().split()
    return int(fields[0]), int(fields[1])


async def reflex_latency(trips: int, rate: float, devices: int, inline: bool = False,
                         same_loop: bool = False, actuator: str = "process",
                         priority: int = 0, controller_priority: int = 0) -> Run:
    """Stop latencies and the achieved background reports/s over `trips` stop firings."""
    fieldbus = FieldbusThread()
    process = ActuatorProcess(priority=priority) \
        if actuator == "process" and not same_loop else None
    AckStampingPort.acked_ns.clear()
    async with (modbus_controller() if inline
                else controller_process(priority=controller_priority)) as port, \
            actuator_running(process):
        with tempfile.TemporaryDirectory() as tmp:
            database = GatewayDatabase(Path(tmp) / DATABASE_FILE)
            outbox = Outbox(database)
            journal = Journal(database, outbox)
            metrics = GatewayMetrics()
            done: asyncio.Queue[tuple[Outcome, int]] = asyncio.Queue()
            reflex = Reflex(parse_rules_text(RULES.format(port=port)), outbox, metrics,
                            on_outcome=lambda o: done.put_nowait((o, time.perf_counter_ns())),
                            ports=ActuatorPorts(process_ports(process) if process
                                                else AckStampingPort.at),
                            offload=None if same_loop else fieldbus.run)
            ingress = Ingress(journal, 100_000)
            ingress.observers.append(reflex.take)  # as gateway.runtime wires it
            pipeline = SummaryPipeline(ingress.queue, TumblingWindows(1000), journal, metrics)
            stop_load, stop_ingress, stop_pipeline = (asyncio.Event() for _ in range(3))
            submits: set[asyncio.Task[bool]] = set()
            load = asyncio.create_task(_background(ingress, rate, devices, stop_load, submits))
            ingesting = asyncio.create_task(ingress.run(stop_ingress))
            summarising = asyncio.create_task(pipeline.run(stop_pipeline))
            try:
                io_tid = _io_thread(process, fieldbus, same_loop)
                sched_before = sched_ns(io_tid)
                started = time.perf_counter()
                before = ingress.counts["accepted"]
                figures = await _trips(ingress, done, trips, submits)
                sched = [(b - a) / 1e6 / trips for a, b in zip(sched_before, sched_ns(io_tid),
                                                                  strict=True)]
                achieved = (ingress.counts["accepted"] - before - 2 * trips) \
                    / (time.perf_counter() - started)
            finally:
                stop_load.set()
                await load
                await asyncio.gather(*submits)
                stop_ingress.set()
                await ingesting
                stop_pipeline.set()
                await summarising
                await reflex.close()
                await fieldbus.close()
                database.close()
    return Run(*figures, achieved, os.getloadavg(), (sched[0], sched[1]))


def _io_thread(process: ActuatorProcess | None, fieldbus: FieldbusThread,
               same_loop: bool) -> int:
    """The kernel id of the thread that runs the stop's Modbus I/O."""
    if process is not None:
        return process.pid
    if same_loop:
        return threading.get_native_id()
    fieldbus.start()
    return fieldbus.native_id


async def _trips(ingress: Ingress, done: asyncio.Queue[tuple[Outcome, int]], trips: int,
                 submits: set[asyncio.Task[bool]],
                 device: str = "press-01"
                 ) -> tuple[Figures, Figures, Figures, Figures, Figures]:
    reflex_ms: list[float] = []
    acked_ms: list[float] = []
    action_ms: list[float] = []
    notified_ms: list[float] = []
    taken_ms: list[float] = []
    rng = np.random.default_rng(1)
    await asyncio.sleep(0.5)  # let the background load reach its rate
    for seq in range(1, trips + 1):
        submitted = time.perf_counter_ns()
        _submit(ingress, _report(device, 2 * seq, temp=90.0), submits)
        outcome, notified = await asyncio.wait_for(done.get(), 10)
        if not outcome.ok:
            raise RuntimeError(f"stop not verified: {outcome.error}")
        reflex_ms.append((outcome.done_ns - submitted) / 1e6)
        acked_ms.append((AckStampingPort.acked_ns[-1] - submitted) / 1e6)
        action_ms.append((outcome.done_ns - outcome.taken_ns) / 1e6)
        notified_ms.append((notified - submitted) / 1e6)
        taken_ms.append((outcome.taken_ns - submitted) / 1e6)
        _submit(ingress, _report(device, 2 * seq + 1, temp=60.0), submits)  # clears it
        await asyncio.sleep(float(rng.uniform(0.005, 0.02)))  # desynchronise from the load
    return (Figures("reflex", reflex_ms), Figures("acked", acked_ms), Figures("action", action_ms),
            Figures("notified", notified_ms), Figures("taken", taken_ms))


def _submit(ingress: Ingress, item: DeviceReport, submits: set[asyncio.Task[bool]]) -> None:
    """As the CoAP resource does: one task per request, awaiting the journal commit."""
    task = asyncio.create_task(ingress.submit(item))
    submits.add(task)
    task.add_done_callback(submits.discard)


async def _background(ingress: Ingress, rate: float, devices: int, stop: asyncio.Event,
                      submits: set[asyncio.Task[bool]]) -> None:
    """Ordinary reports (never tripping) from `devices` nodes at `rate` per second in total."""
    rng = np.random.default_rng(0)
    seq = 0
    start = time.perf_counter()
    while not stop.is_set():
        due = int((time.perf_counter() - start) * rate) - seq
        for _ in range(max(0, due)):
            seq += 1
            _submit(ingress, _report(f"node-{seq % devices:04d}", seq // devices + 1,
                                     temp=20.0 + rng.normal(0, 0.5),
                                     vib=float(rng.normal(0, 1.0))), submits)
        await asyncio.sleep(0.005)


def _report(device: str, seq: int, **values: float) -> DeviceReport:
    now = now_ms()
    return DeviceReport(device, Report(seq, 1, now, values), received_ms=now)


def eval_latency(reports: int = 20_000) -> Figures:
    """One `Reflex.take` of an ordinary report (features and rules, nothing fires)."""
    class _Nowhere:
        async def put(self, records: object, priority: object) -> None:
            """Never called: nothing fires."""

    reflex = Reflex(parse_rules_text(RULES.format(port=1)), _Nowhere(), GatewayMetrics())
    rng = np.random.default_rng(2)
    samples = []
    for seq in range(1, reports + 1):
        item = _report(f"node-{seq % 50:02d}", seq, temp=20.0, vib=float(rng.normal(0, 1)))
        started = time.perf_counter_ns()
        reflex.take(item)
        samples.append((time.perf_counter_ns() - started) / 1e6)
    return Figures("eval", samples[1000:])


def inference_latency(calls: int = 20_000) -> Figures | None:
    """One model call on 16 band energies, with the fixture model."""
    if interpreter_class() is None or not FIXTURE.exists():
        return None
    model = ScoringModel.load(FIXTURE)
    features = np.random.default_rng(3).uniform(0, 1, model.size)
    samples = []
    for _ in range(calls):
        started = time.perf_counter_ns()
        model.score(features)
        samples.append((time.perf_counter_ns() - started) / 1e6)
    return Figures("inference", samples[1000:])


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print the figures."""
    parser = argparse.ArgumentParser(description="Reflex latency benchmark (Modbus TCP loopback)")
    parser.add_argument("--trips", type=int, default=3000, help="stop firings to time")
    parser.add_argument("--runs", type=int, default=1, help="repeat; a verdict line per run")
    parser.add_argument("--rate", type=float, default=1500.0, help="background reports/s")
    parser.add_argument("--devices", type=int, default=200, help="background devices")
    parser.add_argument("--inline-controller", action="store_true",
                        help="run the simulated controller in the gateway's event loop")
    parser.add_argument("--same-loop", action="store_true",
                        help="run the stop's Modbus I/O on the gateway's loop (the old path)")
    parser.add_argument("--actuator", choices=("process", "thread"), default="thread",
                        help="where stops are written: the actuator process or the field-bus "
                        "thread (the gateway's [modbus] actuator)")
    parser.add_argument("--priority", type=int, default=0,
                        help="the actuator process's SCHED_FIFO priority ([modbus] "
                        "actuator_priority; 0: normal)")
    parser.add_argument("--controller-priority", type=int, default=0,
                        help="the simulated controller's SCHED_FIFO priority (root; 0: normal)")
    parser.add_argument("--burn", type=int, default=0,
                        help="processes spinning a core each during the runs (busy machine)")
    args = parser.parse_args(argv)
    runs: list[Run] = []
    with burners(args.burn):
        for index in range(1, args.runs + 1):
            run = asyncio.run(reflex_latency(args.trips, args.rate, args.devices,
                                             args.inline_controller, args.same_loop,
                                             args.actuator, args.priority,
                                             args.controller_priority))
            runs.append(run)
            if args.runs > 1:
                print(f"run {index}/{args.runs}:")
            where = _where(args.same_loop, args.actuator)
            if args.priority and where == "actuator process":
                where += f" (SCHED_FIFO {args.priority})"
            _print_run(run, args.devices, where, args.burn)
    if args.runs > 1:
        _print_summary(runs)
    print(eval_latency().line())
    inference = inference_latency()
    print(inference.line() if inference else "inference  skipped: no LiteRT runtime installed")
    return 0


def _where(same_loop: bool, actuator: str) -> str:
    if same_loop:
        return "gateway loop"
    return "actuator process" if actuator == "process" else "field-bus thread"


def _print_run(run: Run, devices: int, where: str, burn: int) -> None:
    load = " ".join(f"{x:.2f}" for x in run.load)
    print(f"background load: {run.achieved_rate:.0f} reports/s from {devices} devices; "
          f"stop I/O on the {where}; {burn} burner(s); load average {load}")
    print("reflex = Ingress.submit of the tripping report -> write acknowledged and read-back "
          "matched (stamped where the I/O ran)")
    print(run.reflex.line())
    print(f"           {run.reflex.verdict()}")
    print(run.acked.line())
    print(run.action.line())
    print(run.notified.line())
    print(run.taken.line())
    print(f"io sched   {run.io_sched[0]:.3f} ms on a CPU, {run.io_sched[1]:.3f} ms waiting for "
          "one, per trip (the stop I/O's thread, /proc schedstat)")


def _print_summary(runs: list[Run]) -> None:
    """How many runs met the goal, and the spread of the figures across runs."""
    met = sum(all(r.reflex.percentile(q) <= limit for q, limit in LIMITS_MS) for r in runs)
    p99 = [r.reflex.percentile(99) for r in runs]
    p999 = [r.reflex.percentile(99.9) for r in runs]
    acked = [r.acked.percentile(50) for r in runs]
    print(f"summary: goal met in {met} of {len(runs)} runs; reflex p99 {min(p99):.3f}-"
          f"{max(p99):.3f} ms, p99.9 {min(p999):.3f}-{max(p999):.3f} ms; acked p50 "
          f"{min(acked):.3f}-{max(acked):.3f} ms")


if __name__ == "__main__":
    sys.exit(main())
