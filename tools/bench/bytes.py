"""Uplink economy: bytes the cloud receives against the raw waveform the nodes sampled.

Runs a real site (cloud, gateway, vibration nodes in MicroPython) for
--seconds. Each node samples a 3-axis accelerometer in bursts (--samples per
report at --rate-hz, int16 per axis) and reports features; the gateway files
window summaries. Raw bytes are what shipping the waveform itself would cost
(samples x 3 axes x 2 bytes for every report the gateway acknowledged);
uplink bytes are what the gateway actually sent, read from its own metrics
(gzip-compressed HTTPS bodies). The goal is at least 200x fewer.

The vibration firmware needs 96-112 KB of heap on the unix port (its bytecode
lives in the heap there; on the ESP32 it is frozen in flash).
"""

from __future__ import annotations

import argparse
import json
import re
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import httpx

from tandem.tools.site import NodeSpec, Site, local_site

GOAL_RATIO = 200
VIBRATION_HEAP = "112K"  # the unix port keeps bytecode in the heap; see the module docstring


def main(argv: Sequence[str] | None = None) -> int:
    """Run the site, print raw bytes, uplink bytes and their ratio."""
    args = _parser().parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="tandem-bytes-") as tmp:
        site = local_site(Path(tmp) / "site", window_s=args.window)
        try:
            raw, uplink, reports = _run(site, args)
        finally:
            site.stop_all()
    ratio = raw / uplink if uplink else float("inf")
    print(f"reports acknowledged : {reports:,} from {args.nodes} nodes in {args.seconds:g} s")
    print(f"raw waveform bytes   : {raw:,} ({args.samples} samples x 3 axes x 2 B per report)")
    print(f"uplink bytes         : {uplink:,} (gzip HTTPS bodies, all batches)")
    print(f"ratio                : {ratio:,.0f}x fewer  (goal >= {GOAL_RATIO}x)")
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tandem bench bytes",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--nodes", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=120.0)
    parser.add_argument("--rate-hz", type=int, default=800)
    parser.add_argument("--samples", type=int, default=128, help="samples per report")
    parser.add_argument("--period-ms", type=int, default=250)
    parser.add_argument("--window", type=float, default=60.0, help="gateway summary window, s")
    return parser


def _run(site: Site, args: argparse.Namespace) -> tuple[int, int, int]:
    site.start_cloud()
    site.start_gateway()
    sensor = {"model": "accel", "rate_hz": args.rate_hz, "samples": args.samples,
              "scenario": "normal", "seed": 1}
    nodes = []
    for i in range(args.nodes):
        spec = NodeSpec(f"vib-{i + 1:02d}", period_ms=args.period_ms, heap=VIBRATION_HEAP,
                        extra=(("sensor", {**sensor, "seed": i + 1}), ("outbox", 8)))
        nodes.append(site.start_node(spec, site.issue_node(spec)))
    time.sleep(args.seconds)  # the benchmark's measured interval
    for node in nodes:
        node.stop()
    reports = sum(1 for node in nodes for line in node.lines if _is_ack(line))
    # Let the last windows close and the backlog drain before reading the bytes.
    time.sleep(args.window * 2 + 3)  # closing time of the last window, then one upload cycle
    metrics = httpx.get(f"http://127.0.0.1:{site.ports.metrics}/metrics", timeout=10).text
    uplink = sum(int(float(v)) for v in
                 re.findall(r'^tandem_gw_uplink_bytes_total\{[^}]*\} (\S+)$', metrics, re.M))
    return reports * args.samples * 3 * 2, uplink, reports


def _is_ack(line: str) -> bool:
    try:
        event = json.loads(line)
    except ValueError:
        return False
    return isinstance(event, dict) and event.get("ev") == "ack"


if __name__ == "__main__":
    raise SystemExit(main())
