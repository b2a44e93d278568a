"""`tandem bench modbus-fleet`: one Modbus TCP bus polling a fleet at its configured rate.

100 units behind one address (pymodbus's server in its own process, as a PLC
or a Modbus TCP gateway would be), 10 holding registers each, polled every
100 ms: 1,000 polls/s configured. The bus runs as in the gateway: on the
field-bus thread, its reports crossing to the ingress on the main loop, which
journals them to SQLite with group commit. Printed: achieved/configured polls
per second (limit: 0.99), the accounting (every poll journaled exactly once:
seq 1..n per unit), peak RSS (limit 150 MB) and CPU of this process, then the
same with 5 of the 100 units silent (they never answer; the other 95 must keep
their rate).

    tandem bench modbus-fleet [--units 100] [--dead 5] [--seconds 10] [--connections 4]
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from tandem.gateway.modbus.config import ModbusBus, ModbusUnit
from tandem.gateway.modbus.coordinator import BusCoordinator
from tandem.gateway.modbus.fieldbus import CrossLoopSink, FieldbusThread
from tandem.gateway.pipeline.ingress import Ingress
from tandem.gateway.pipeline.journal import Journal
from tandem.gateway.store.database import GatewayDatabase
from tandem.gateway.store.outbox import Outbox
from tandem.tools.bench.reflex import controller_process

RATE_LIMIT = 0.99
RSS_LIMIT_MB = 150.0
REGISTERS = 10


def write_fleet_map(folder: Path, registers: int = REGISTERS) -> Path:
    """A register map of `registers` holding registers (uint16 at 0..n-1), written to folder."""
    points = "".join(f'\n[[point]]\nname = "h{i}"\ntable = "holding"\naddress = {i}\n'
                     f'type = "uint16"\n' for i in range(registers))
    path = folder / "fleet-unit.toml"
    path.write_text(f'version = 1\nname = "fleet-unit"\n{points}')
    return path


@dataclass(frozen=True)
class FleetRun:
    """What one run measured."""

    configured: float  # polls/s the answering units are configured for
    achieved: float  # successful polls/s of the answering units in the measured interval
    polls: int  # successful polls over the whole run
    journaled: int  # journal rows
    duplicates: int  # journal rows of a (unit, seq) seen before
    gaps: int  # polls with no journal row
    refused: int  # reports the sink refused (each counted, none lost silently)
    dead_failed: int  # failed polls of the silent units
    rss_mb: float
    cpu: float  # this process's CPU seconds per wall second, over the measured interval

    @property
    def ratio(self) -> float:
        """Achieved over configured."""
        return self.achieved / self.configured if self.configured else 0.0


async def fleet_run(units: int, dead: int, seconds: float, connections: int,
                    poll_s: float = 0.1, warmup_s: float = 1.0) -> FleetRun:
    """Poll `units` units (the last `dead` of them silent) for warm-up + `seconds`."""
    with tempfile.TemporaryDirectory() as tmp:
        regmap = write_fleet_map(Path(tmp))
        served = units - dead
        async with controller_process("--units", str(served), "--silent") as port:
            return await _measure(Path(tmp), regmap, port, units, served, seconds, connections,
                                  poll_s, warmup_s)


async def _measure(tmp: Path, regmap: Path, port: int, units: int, served: int, seconds: float,
                   connections: int, poll_s: float, warmup_s: float) -> FleetRun:
    database = GatewayDatabase(tmp / "gateway.db")
    ingress = Ingress(Journal(database, Outbox(database)), max_pending=100_000)
    sink = CrossLoopSink(ingress)
    sink.bind(asyncio.get_running_loop())
    bus = BusCoordinator(ModbusBus(
        name="fleet", kind="tcp", host="127.0.0.1", tcp_port=port, timeout_s=0.5,
        connections=connections, units=tuple(
            ModbusUnit(name=f"u{i:03d}", unit_id=i, map=regmap, poll_s=poll_s)
            for i in range(1, units + 1))), sink)
    fieldbus = FieldbusThread()
    stop = asyncio.Event()
    committer = asyncio.create_task(ingress.run(stop))
    fieldbus.spawn(lambda halt: [("modbus-fleet", bus.run(halt))])
    live = bus.units[:served]
    try:
        await asyncio.sleep(warmup_s)
        polls0, wall0, cpu0 = sum(u.polls for u in live), time.monotonic(), time.process_time()
        await asyncio.sleep(seconds)
        polls1, wall1, cpu1 = sum(u.polls for u in live), time.monotonic(), time.process_time()
    finally:
        await fieldbus.close(bus.close)
        stop.set()
        await committer
    rows = database.connection.execute("SELECT device, seq FROM journal").fetchall()
    database.close()
    return _account(bus, rows, served, poll_s, (polls1 - polls0) / (wall1 - wall0),
                    (cpu1 - cpu0) / (wall1 - wall0))


def _account(bus: BusCoordinator, rows: list[tuple[str, int]], served: int, poll_s: float,
             achieved: float, cpu: float) -> FleetRun:
    seen = Counter(rows)
    per_unit = Counter(device for device, _ in seen)
    gaps = sum(max(0, u.polls - per_unit[u.device]) for u in bus.units)
    return FleetRun(
        configured=served / poll_s, achieved=achieved, polls=sum(u.polls for u in bus.units),
        journaled=len(rows), duplicates=sum(n - 1 for n in seen.values()), gaps=gaps,
        refused=bus.submitted["sink_full"], dead_failed=sum(u.failed for u in bus.units[served:]),
        rss_mb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, cpu=cpu)


def _print(title: str, run: FleetRun) -> None:
    ok = run.duplicates == 0 and run.gaps == 0 and run.refused == 0 \
        and run.journaled == run.polls
    print(title)
    print(f"  rate        {run.achieved:8.1f} of {run.configured:.0f} polls/s configured: "
          f"ratio {run.ratio:.3f} (limit >= {RATE_LIMIT}) "
          f"{'ok' if run.ratio >= RATE_LIMIT else 'BELOW'}")
    print(f"  accounting  {run.polls} polls, {run.journaled} journaled, {run.duplicates} "
          f"twice, {run.gaps} missing, {run.refused} refused: "
          f"{'exactly once' if ok else 'NOT EXACTLY ONCE'}")
    print(f"  rss         {run.rss_mb:8.1f} MB peak (limit {RSS_LIMIT_MB:.0f} MB): ratio "
          f"{run.rss_mb / RSS_LIMIT_MB:.2f}")
    print(f"  cpu         {run.cpu * 100:8.1f} % of one core (this process: bus + journal)")
    if run.dead_failed:
        print(f"  silent      {run.dead_failed} failed polls of the silent units "
              "(each one timeout, then backoff)")


def main(argv: list[str] | None = None) -> int:
    """Run the fleet, then the fleet with silent units; print figures beside their limits."""
    parser = argparse.ArgumentParser(prog="tandem bench modbus-fleet", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--units", type=int, default=100)
    parser.add_argument("--dead", type=int, default=5, help="silent units in the second run")
    parser.add_argument("--seconds", type=float, default=10.0, help="measured, per run")
    parser.add_argument("--warmup", type=float, default=1.0)
    parser.add_argument("--poll", type=float, default=0.1, help="poll period per unit, s")
    parser.add_argument("--connections", type=int, default=4, help="TCP connections of the bus")
    args = parser.parse_args(argv)
    print(f"{args.units} Modbus TCP units x {REGISTERS} holding registers behind one address, "
          f"every {args.poll * 1000:.0f} ms, one bus with {args.connections} connection(s):")
    for dead in (0, args.dead):
        run = asyncio.run(fleet_run(args.units, dead, args.seconds, args.connections,
                                    args.poll, args.warmup))
        _print(f"{args.units - dead} answering, {dead} silent:", run)
    return 0


if __name__ == "__main__":
    sys.exit(main())
