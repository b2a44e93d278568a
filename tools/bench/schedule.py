"""Scheduling strategies compared in the SimPy simulator, the engine the cloud runs deciding.

For each fleet size (and a small setup: 3 gateways of one site, a 2-worker cloud,
a surge of tasks at one gateway) every strategy runs over the same bursty trace;
the table gives the deadline hit rate, the mean completion time, the input bytes
moved between places and the compute used in the cloud. Markdown, for the README.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence
from dataclasses import replace

from tandem.tools.simulate.model import Outcome, simulate
from tandem.tools.simulate.traces import TraceConfig
from tandem.wire.scheduling import Strategy

SMALL = TraceConfig(gateways=3, per_site=3, seconds=120.0, calm_rate=0.02, surge=40)


def main(argv: Sequence[str] | None = None) -> int:
    """Simulate every strategy for each setup and print the comparison table."""
    args = _parser().parse_args(argv)
    setups: list[tuple[str, TraceConfig]] = []
    if not args.no_small:
        setups.append((f"small (3 gw, surge {SMALL.surge})", replace(SMALL, seed=args.seed)))
    for n in args.gateways:
        setups.append((f"{n:,} gw", TraceConfig(gateways=n, seconds=args.seconds, seed=args.seed)))
    print("| setup | strategy | tasks | deadline hit | mean completion | bytes moved "
          "| cloud compute | moves |")
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    started, tasks = time.monotonic(), 0
    for name, cfg in setups:
        for strategy in Strategy:
            outcome = simulate(cfg, strategy)
            tasks += outcome.tasks
            print(_row(name, outcome))
    print()
    print(f"simulated tasks  {tasks:,} over {len(setups)} setups x {len(Strategy)} strategies "
          f"in {time.monotonic() - started:.1f} s wall")
    return 0


def _row(setup: str, o: Outcome) -> str:
    share = o.cloud_compute / o.total_compute if o.total_compute else 0.0
    return (f"| {setup} | {o.strategy.value} | {o.tasks:,} | {o.hit_rate:.1%} "
            f"| {o.mean_completion_s:.1f} s | {o.bytes_moved / 1e6:,.0f} MB "
            f"| {o.cloud_compute:,.0f} score-s ({share:.0%}) | {o.moves:,} |")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tandem bench schedule",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--gateways", type=int, nargs="*", default=[100, 1000],
                        help="fleet sizes to simulate")
    parser.add_argument("--seconds", type=float, default=900.0, help="trace length, s")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--no-small", action="store_true", help="skip the 3-gateway setup")
    return parser
