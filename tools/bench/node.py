"""`tandem bench node`: the firmware's own time per window, and what it means for an ESP32.

Runs a real site (cloud, gateway) and one vibration node in MicroPython's unix
port for --seconds; the node times itself with time.ticks_us (firmware/
windowtime.py): sampling with its features, report encoding, and the DTLS
send of each report. Its stats event carries the figures.

The ESP32 figure is an estimate: MicroPython runs pystone (tests/firmware/
mp_pystone.py, CPython's own) on this machine, and the node's time is scaled
by (pystones/s here) / (1,661 pystones/s, an ESP32 at 240 MHz as published in
micropython issue 5673). Pystone is interpreter work; the DTLS send is mostly
mbedtls C code and the ESP32's AES/SHA hardware, so its estimate is pessimistic.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tandem.tools.procs import ProcessFailed
from tandem.tools.site import REPO, NodeSpec, Site, local_site, micropython

ESP32_PYSTONES = 1661.0  # MicroPython on an ESP32 at 240 MHz (micropython issue 5673)
PYSTONE = REPO / "tests" / "firmware" / "mp_pystone.py"
VIBRATION_HEAP = "112K"  # as tools/bench/bytes.py: bytecode lives in the heap on the unix port
PARTS = ("features", "encode", "send")


def pystones(passes: int, runs: int = 3) -> float:
    """Pystones/s of MicroPython's unix port on this machine: the best of `runs` (the run
    least disturbed by other load; the estimate then errs towards a slower ESP32)."""
    return max(_pystone_run(passes) for _ in range(runs))


def _pystone_run(passes: int) -> float:
    out = subprocess.run([micropython(), "-X", "heapsize=1M", str(PYSTONE), str(passes)],
                         capture_output=True, text=True, timeout=300, check=True).stdout
    match = re.search(r"benchmarks at ([\d.]+) pystones/second", out)
    if not match:
        raise RuntimeError(f"pystone printed no figure: {out!r}")
    return float(match.group(1))


def window_times(site: Site, seconds: float, period_ms: int, samples: int) -> dict[str, Any]:
    """The node's last stats event's window_us after `seconds` of reporting."""
    site.start_cloud()
    site.start_gateway()
    sensor = {"model": "accel", "rate_hz": 800, "samples": samples, "scenario": "normal",
              "seed": 1}
    spec = NodeSpec("vib-01", period_ms=period_ms, heap=VIBRATION_HEAP,
                    extra=(("sensor", sensor), ("outbox", 8), ("stats_every", 10)))
    node = site.start_node(spec, site.issue_node(spec))
    time.sleep(seconds)  # the measured interval
    node.stop()
    stats = [e for e in (_event(line) for line in node.lines)
             if e.get("ev") == "stats" and "window_us" in e]
    if not stats:
        raise ProcessFailed(f"the node logged no stats event in {seconds:g} s")
    return dict(stats[-1])


def _event(line: str) -> dict[str, Any]:
    try:
        event = json.loads(line)
    except ValueError:
        return {}
    return event if isinstance(event, dict) else {}


def main(argv: Sequence[str] | None = None) -> int:
    """Time the node's windows, calibrate with pystone, print the ESP32 estimate."""
    parser = argparse.ArgumentParser(prog="tandem bench node",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--period-ms", type=int, default=250)
    parser.add_argument("--samples", type=int, default=128, help="accelerometer samples/window")
    parser.add_argument("--pystone-passes", type=int, default=50_000)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="tandem-node-") as tmp:
        site = local_site(Path(tmp) / "site", window_s=10)
        try:
            stats = window_times(site, args.seconds, args.period_ms, args.samples)
        finally:
            site.stop_all()
    here = pystones(args.pystone_passes)
    scale = here / ESP32_PYSTONES
    print(f"node: vibration, {args.samples} samples per window, one window every "
          f"{args.period_ms} ms, MicroPython unix port; {stats.get('sampled')} windows")
    print(f"pystone      {here:10.0f} pystones/s here (best of 3); ESP32 @ 240 MHz "
          f"{ESP32_PYSTONES:.0f} "
          f"(published): x{scale:.1f}")
    total_mean = total_max = 0
    for part in PARTS:
        figures = stats["window_us"][part]
        total_mean += figures["mean_us"]
        total_max += figures["max_us"]
        print(f"{part:<12} mean {figures['mean_us']:8d} us  max {figures['max_us']:8d} us  "
              f"(n={figures['n']})  ESP32 estimate mean {figures['mean_us'] * scale / 1000:8.1f}"
              " ms")
    esp_ms = total_mean * scale / 1000
    print(f"{'window':<12} mean {total_mean:8d} us  max {total_max:8d} us (sum of worsts)  "
          f"ESP32 estimate {esp_ms:.1f} ms of the {args.period_ms} ms period = "
          f"{esp_ms / args.period_ms:.2f}")
    print("estimate: interpreter time scaled by pystones; the DTLS send is mostly C and "
          "hardware crypto on the ESP32, so its share is overstated")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
