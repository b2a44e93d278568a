"""End-to-end latency of one reading: node acknowledged -> queryable in the cloud.

Runs a real site (cloud, gateway, one MicroPython node) and polls the cloud's
query API every 20 ms. A reading's latency is the time from the node logging
the gateway's 2.04 to the first poll that returns the summary holding it. It
is dominated by design choices, not by the wire: the summary window (a
reading waits for its window to close), the pipeline's flush interval and
the uplink interval. Printed: p50 and max for the chosen settings.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from tandem.tools.site import NodeSpec, Site, local_site


def main(argv: Sequence[str] | None = None) -> int:
    """Measure and print reading latencies."""
    args = _parser().parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="tandem-latency-") as tmp:
        site = local_site(Path(tmp) / "site", window_s=args.window)
        try:
            latencies = _measure(site, args)
        finally:
            site.stop_all()
    ms = sorted(x * 1000 for x in latencies)
    print(f"readings measured : {len(ms)} (window {args.window:g} s, node period "
          f"{args.period_ms} ms, uplink interval 1 s)")
    print(f"latency p50 / max : {statistics.median(ms):.0f} ms / {ms[-1]:.0f} ms "
          "(node 2.04 -> summary queryable in the cloud)")
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tandem bench latency",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--reports", type=int, default=30)
    parser.add_argument("--period-ms", type=int, default=1000)
    parser.add_argument("--window", type=float, default=1.0, help="summary window, s")
    return parser


def _measure(site: Site, args: argparse.Namespace) -> list[float]:
    site.start_cloud()
    site.start_gateway()
    spec = NodeSpec("lat-01", period_ms=args.period_ms, max_reports=args.reports)
    node = site.start_node(spec, site.issue_node(spec))
    print(f"site up: cloud, gateway and node {spec.name} running", flush=True)
    acked: dict[int, float] = {}  # node time (ms) -> wall clock at the ack
    seen: dict[int, float] = {}
    with site.cloud_client(timeout=5) as client:
        deadline = time.monotonic() + args.reports * args.period_ms / 1000 + 30
        done = 0
        while time.monotonic() < deadline:
            for line in node.lines[done:]:
                event = json.loads(line) if line.startswith("{") else {}
                if event.get("ev") == "ack":
                    acked.setdefault(event["t"], time.time())
            done = len(node.lines)
            points = client.get("/api/v1/summaries",
                                params={"device": spec.name, "channel": "temp"}).json()["points"]
            now = time.time()
            for t in acked:
                if t not in seen and any(p["t0"] <= t < p["t1"] for p in points):
                    seen[t] = now
            if len(seen) >= args.reports:
                break
            time.sleep(0.02)  # the polling interval of the measurement
    return [seen[t] - acked[t] for t in seen]


if __name__ == "__main__":
    raise SystemExit(main())
