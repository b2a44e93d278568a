"""Installer page benchmark: page loads with a big site, and the reflex while the page is polled.

    tandem bench installer [--nodes 500] [--units 100] [--loads 20] [--trips 1000]

A real gateway (tandem.gateway.runtime.Gateway, the daemon's own wiring, its
HTTPS installer page) runs in this process on a temp site: `--nodes` nodes
report through its ingress at `--rate` in total (tools/bench/reflex.py's
background load), `--units` Modbus TCP units are polled once a second from
tools/modbus_sim.py in its own process (a bus in the Modbus file, as the
page adds them), and the rules file holds reflex.py's emergency stop.

1. Page loads: another process (tools/bench/installerclient.py, the browser's
   side) logs in and loads each page and JSON endpoint `--loads` times;
   printed: p50 and max per path, the worst p50 against the 300 ms goal.
2. Reflex: reflex.py's trips (report -> stop written and read back) through
   the gateway's own reflex, with nobody on the page and with the status
   page's JSON polled `--poll-rate` times a second, in `--rounds` alternating
   rounds; printed: both p99 and their ratio (goal: with / without <= 1).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path

from tandem.gateway.config import GatewayConfig, load_config
from tandem.gateway.installer.password import set_password
from tandem.gateway.modbus import busfile
from tandem.gateway.modbus.config import ModbusBus, ModbusUnit
from tandem.gateway.rules.reflex import Outcome
from tandem.gateway.runtime import Gateway
from tandem.tools.bench.installerclient import STATUS_JSON
from tandem.tools.bench.reflex import (
    RULES,
    AckStampingPort,
    Figures,
    _background,
    _trips,
    controller_process,
)
from tandem.tools.site import local_site

PAGES = ("/", "/rules", "/modbus", "/api/status", "/api/modbus", "/api/rules",
         "/api/live?device=node-0001")
GOAL_MS = 300.0
PASSWORD = "bench password, long enough"
UNIT_MAP = """\
version = 1
name = "fleet-unit"

[[point]]
name = "level"
table = "holding"
address = 0
type = "uint16"
scale = 0.1

[[point]]
name = "flow"
table = "holding"
address = 1
type = "uint16"
"""


def main(argv: Sequence[str] | None = None) -> int:
    """Run both measurements and print their figures."""
    args = _parser().parse_args(argv)
    asyncio.run(_bench(args))
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tandem bench installer",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--nodes", type=int, default=500, help="nodes reporting")
    parser.add_argument("--units", type=int, default=100, help="Modbus units polled")
    parser.add_argument("--rate", type=float, default=500.0, help="node reports/s in total")
    parser.add_argument("--loads", type=int, default=20, help="loads of each page")
    parser.add_argument("--trips", type=int, default=1000,
                        help="stop firings timed quiet, and as many polled")
    parser.add_argument("--rounds", type=int, default=4,
                        help="alternating quiet / polled rounds the trips are split into")
    parser.add_argument("--poll-rate", type=float, default=10.0,
                        help="status page polls/s (each of its JSON endpoints)")
    return parser


async def _bench(args: argparse.Namespace) -> None:
    async with controller_process("--units", str(args.units)) as plc:
        with tempfile.TemporaryDirectory(prefix="tandem-installer-") as tmp:
            config, ca = _site(Path(tmp), plc, args.units)
            async with _running(config) as (gateway, done), _load(gateway, args) as submits:
                assert gateway.installer is not None, "the installer page is enabled"
                url = f"https://127.0.0.1:{gateway.installer.port}"
                timings = await _client(url, ca, "loads", "--loads", str(args.loads), *PAGES)
                _print_pages(timings, args)
                quiet, polled, polls = await _reflex_rounds(gateway, done, submits, url, ca,
                                                            args)
                _print_reflex(quiet, polled, args.poll_rate, polls)


async def _reflex_rounds(gateway: Gateway, done: asyncio.Queue[tuple[Outcome, int]],
                         submits: set[asyncio.Task[bool]], url: str, ca: Path,
                         args: argparse.Namespace) -> tuple[Figures, Figures, dict[str, float]]:
    """Quiet and polled trips in alternating rounds, so a change in the machine's load
    falls on both alike; each round a fresh tripping device."""
    quiet: list[float] = []
    polled: list[float] = []
    polls = {"requests": 0.0, "failed": 0.0, "cpu_s": 0.0, "wall_s": 0.0}
    per_round = max(1, args.trips // args.rounds)
    for r in range(args.rounds):
        quiet += (await _trips(gateway.ingress, done, per_round, submits,
                               device=f"press-quiet-{r}"))[0].samples
        async with _poller(url, ca, args.poll_rate) as counts:
            polled += (await _trips(gateway.ingress, done, per_round, submits,
                                    device=f"press-polled-{r}"))[0].samples
        for key in polls:
            polls[key] += counts.get(key, 0)
    return Figures("reflex", quiet), Figures("reflex", polled), polls


def _site(root: Path, plc: int, units: int) -> tuple[GatewayConfig, Path]:
    """A local site's gateway config with the stop rule and `units` units in the Modbus file."""
    site = local_site(root / "site", rules=RULES.format(port=plc))
    config = load_config(site.root / "gateway.toml", environ={
        "TANDEM_GW_UPLINK_URL": "", "TANDEM_GW_METRICS_PORT": "0", "TANDEM_GW_COAP_PORT": "0"})
    data_dir = config.gateway.data_dir
    data_dir.mkdir(parents=True, exist_ok=True)
    regmap = data_dir / "registers" / "fleet-unit.toml"
    regmap.parent.mkdir()
    regmap.write_text(UNIT_MAP)
    bus = ModbusBus(name="fleet", kind="tcp", host="127.0.0.1", tcp_port=plc, timeout_s=1.0,
                    units=tuple(ModbusUnit(name=f"unit-{i:03}", unit_id=i, map=regmap,
                                           poll_s=1.0) for i in range(1, units + 1)))
    busfile.path_in(data_dir).write_text(busfile.render((bus,), data_dir))
    set_password(data_dir, PASSWORD)
    return config, site.pki / "ca.pem"


@asynccontextmanager
async def _running(config: GatewayConfig) -> AsyncIterator[
        tuple[Gateway, asyncio.Queue[tuple[Outcome, int]]]]:
    """The started gateway with its stops stamped (reflex.py's port) and their outcomes queued."""
    gateway = Gateway(config)
    done: asyncio.Queue[tuple[Outcome, int]] = asyncio.Queue()
    assert gateway.local is not None, "the rules file is configured"
    gateway.ports.rebind(AckStampingPort.at, {})  # the stop on a connection of its own
    gateway.local.reflex.install(gateway.local.reflex.ruleset)  # actions take the new port
    gateway.local.reflex.on_outcome = lambda o: done.put_nowait((o, time.perf_counter_ns()))
    await gateway.start()
    try:
        yield gateway, done
    finally:
        await gateway.stop()


@asynccontextmanager
async def _load(gateway: Gateway, args: argparse.Namespace) -> AsyncIterator[
        set[asyncio.Task[bool]]]:
    """The nodes' reports (reflex.py's load), from when every node reported and every unit
    was polled until the body ends; yields the in-flight submits."""
    stop, submits = asyncio.Event(), set[asyncio.Task[bool]]()
    task = asyncio.create_task(_background(gateway.ingress, args.rate, args.nodes, stop,
                                           submits))
    try:
        deadline = time.monotonic() + 60 + args.nodes / args.rate
        while len(gateway.live.nodes) < args.nodes or not _all_polled(gateway):
            if time.monotonic() > deadline:
                raise RuntimeError(f"site not loaded: {len(gateway.live.nodes)} nodes")
            await asyncio.sleep(0.1)
        yield submits
    finally:
        stop.set()
        await task
        await asyncio.gather(*submits)


def _all_polled(gateway: Gateway) -> bool:
    service = gateway.modbus
    return service is not None and all(u.polls > 0 for c in service.coordinators.values()
                                       for u in c.units)


async def _client(url: str, ca: Path, *argv: str) -> dict[str, list[float]]:
    """Run the client process to completion; its JSON line."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tandem.tools.bench.installerclient", argv[0], url, "--ca",
        str(ca), *argv[1:], stdout=asyncio.subprocess.PIPE,
        env={**os.environ, "TANDEM_BENCH_PASSWORD": PASSWORD})
    out, _ = await proc.communicate()
    if proc.returncode != 0:
        raise RuntimeError(f"installer client failed ({proc.returncode})")
    result: dict[str, list[float]] = json.loads(out.decode().splitlines()[-1])
    return result


@asynccontextmanager
async def _poller(url: str, ca: Path, rate: float) -> AsyncIterator[dict[str, float]]:
    """The status page polled by another process while the body runs; its counts after."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tandem.tools.bench.installerclient", "poll", url, "--ca", str(ca),
        "--rate", str(rate), stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        env={**os.environ, "TANDEM_BENCH_PASSWORD": PASSWORD})
    assert proc.stdin is not None and proc.stdout is not None
    counts: dict[str, float] = {}
    try:
        ready = await asyncio.wait_for(proc.stdout.readline(), 60)
        if ready.strip() != b"polling":
            raise RuntimeError(f"poller did not start: {ready!r}")
        yield counts
    finally:
        proc.stdin.close()
        last = await asyncio.wait_for(proc.stdout.read(), 30)
        await proc.wait()
        if last.strip():
            counts.update(json.loads(last.decode().splitlines()[-1]))


def _print_pages(timings: dict[str, list[float]], args: argparse.Namespace) -> None:
    print(f"installer pages   : {len(timings)} paths, {args.nodes} nodes and {args.units} "
          f"Modbus units registered, {args.loads} loads each (goal < {GOAL_MS:g} ms)")
    for page, ms in timings.items():
        print(f"  {page:<30} p50 {statistics.median(ms):6.1f} ms  max {max(ms):6.1f} ms")
    worst = max(statistics.median(ms) for ms in timings.values())
    print(f"installer worst p50 : {worst:.1f} ms / {GOAL_MS:g} ms = {worst / GOAL_MS:.2f}")


def _print_reflex(quiet: Figures, polled: Figures, rate: float,
                  polls: dict[str, float]) -> None:
    print("reflex = Ingress.submit of the tripping report -> stop written and read back, "
          "through the gateway's own reflex")
    print(f"reflex quiet   : {quiet.line()}")
    print(f"reflex polled  : {polled.line()}")
    print(f"status polls   : {polls['requests']:.0f} requests ({rate:g}/s to each of "
          f"{len(STATUS_JSON)} endpoints), {polls['failed']:.0f} failed; the poller process "
          f"used {polls['cpu_s']:.1f} s CPU in {polls['wall_s']:.1f} s (shares the cores)")
    ratio = polled.percentile(99) / quiet.percentile(99)
    print(f"reflex p99 polled / quiet : {polled.percentile(99):.3f} / "
          f"{quiet.percentile(99):.3f} ms = {ratio:.2f} (goal <= 1, within noise)")
