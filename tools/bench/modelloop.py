"""The closed model loop on a real local site: new labels to the new model active on a whole group.

One cloud and a group of gateways (separate processes, each fed by a
MicroPython node), driven by tools/modelloop.py through the operator's own
commands and API. A baseline version is trained, released fleet-wide and
active everywhere first; then the timed loop: a round of labels (API) ->
`dataset build` -> `model train` (TensorFlow in its child process, head-only on
the baseline) -> register + promote -> a staged rollout (shadow -> canary ->
waves, each stage gated over a short soak window) -> the new version active on
every gateway. The gateways fetch the artefact over a link bounded by
`[models] rate_bytes_s`; the inference p99 per window with the new model comes
from the latency histograms the gateways report for it.
"""

from __future__ import annotations

import argparse
import re
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from itertools import pairwise
from pathlib import Path
from typing import Any

from tandem.gateway.models.feedback import LATENCY_BOUNDS_MS
from tandem.tools.modelloop import LoopError, ModelLoop, recent_fleet
from tandem.wire.clock import now_ms

GROUP = "plant-a"
P99_GOAL_MS = 5.0
BURST = 1024  # the gateways' [models] burst_bytes (tools/modelloop.py): fetched at once
PROGRESS = re.compile(r"model artefact \w+: (\d+)/(\d+) bytes")
ACTIVE = re.compile(r"model (\S+) active")


@dataclass
class Chunks:
    """One gateway's transfer, as its log tells it: (t_ms, offset) per accepted chunk."""

    seen: list[tuple[int, int]] = field(default_factory=list)
    size: int = 0


class GatewayLines:
    """Timestamps of the gateways' transfer and activation lines (echo of their output)."""

    def __init__(self, gateways: Sequence[str]) -> None:
        self._names = set(gateways)
        self._lock = threading.Lock()
        self.transfers: dict[tuple[str, str], Chunks] = {}  # (phase, gateway)
        self.activated: dict[tuple[str, str], int] = {}
        self.phase = "baseline"

    def echo(self, who: str, line: str) -> None:
        """Called from each child's reader thread with the gateway's name."""
        if who not in self._names:
            return
        at = now_ms()
        with self._lock:
            if m := PROGRESS.search(line):
                chunks = self.transfers.setdefault((self.phase, who), Chunks())
                chunks.seen.append((at, int(m[1])))
                chunks.size = int(m[2])
            if m := ACTIVE.search(line):
                self.activated.setdefault((who, m[1]), at)


@dataclass(frozen=True)
class Options:
    """The bench's parameters (see --help)."""

    gateways: int
    devices: int
    windows: int
    epochs: int
    rate: int
    chunk: int
    soak: float
    min_windows: int
    wave_size: int


def main(argv: Sequence[str] | None = None) -> int:
    """Run the baseline, then the timed loop, and print its figures."""
    opts = _options(argv)
    names = [f"gw-{i + 1:02d}" for i in range(opts.gateways)]
    lines = GatewayLines(names)
    with tempfile.TemporaryDirectory(prefix="tandem-modelloop-") as tmp:
        root = Path(tmp)
        loop = ModelLoop(root / "site", dict.fromkeys(names, GROUP), rate_bytes_s=opts.rate,
                         echo=lines.echo)
        try:
            started = time.perf_counter()
            loop.start()
            fleet = recent_fleet(opts.devices, opts.windows)
            loop.file_fleet(fleet)
            _baseline(loop, fleet, root, opts, names)
            print(f"site + baseline m-0001 on {len(names)} gateways: "
                  f"{time.perf_counter() - started:.1f} s (not part of the loop)")
            figures = _closed_loop(loop, fleet, root, opts, names, lines)
        except LoopError as exc:
            print(f"modelloop: {exc}")
            return 1
        finally:
            loop.stop()
    _print(figures, opts, lines, names)
    return 0


def _baseline(loop: ModelLoop, fleet: Any, root: Path, opts: Options, names: list[str]) -> None:
    """m-0001 from labels on the latest period, released fleet-wide and active everywhere."""
    w = opts.windows
    loop.label(fleet, w * 8 // 10, w)
    loop.build_dataset(root / "d1.npz", fleet)
    loop.train(root / "d1.npz", root / "m1", "m-0001", epochs=opts.epochs)
    loop.register(root / "m1", opts.chunk)
    loop.promote("m-0001")
    loop.release("m-0001")
    loop.wait_active(names, "m-0001", timeout=300)


def _closed_loop(loop: ModelLoop, fleet: Any, root: Path, opts: Options, names: list[str],
                 lines: GatewayLines) -> dict[str, Any]:
    """The timed loop; wall-clock ms of each step's end (t0: labels start)."""
    w = opts.windows
    lines.phase = "loop"
    t: dict[str, Any] = {"t0": now_ms()}
    t["labels_n"] = loop.label(fleet, 0, w * 8 // 10)
    t["labels"] = now_ms()
    loop.build_dataset(root / "d2.npz", fleet)
    t["dataset"] = now_ms()
    t["card"] = loop.train(root / "d2.npz", root / "m2", "m-0002", root / "m1",
                           epochs=opts.epochs)
    t["train"] = now_ms()
    loop.register(root / "m2", opts.chunk)
    try:
        loop.promote("m-0002")
    except LoopError:  # it did not beat m-0001 on the held-out split: the operator forces it
        loop.promote("m-0002", force=True)
    limits = {"soak_s": opts.soak, "min_windows": opts.min_windows, "max_alarm_rate": 0.2,
              "max_p99_ms": 50, "max_errors": 0, "max_drift": 1000}
    loop.roll_out(GROUP, "m-0002", names[:1], opts.wave_size, limits)
    t["release"] = now_ms()
    t["rollout"] = loop.settled(GROUP, timeout=600)
    if t["rollout"]["state"] != "completed":
        raise LoopError(f"rollout {t['rollout']['state']}: {t['rollout']['log']}")
    loop.wait_active(names, "m-0002", timeout=120)
    # Done: active on every gateway and the last stage's gate passed over its soak window.
    t["active"] = max(lines.activated[(n, "m-0002")] for n in names)
    t["end"] = max(t["active"], t["rollout"]["log"][-1]["t_ms"])
    t["reports"] = loop.reports("m-0002")
    return t


def _print(t: dict[str, Any], opts: Options, lines: GatewayLines, names: list[str]) -> None:
    total = (t["end"] - t["t0"]) / 1000
    log = t["rollout"]["log"]
    stages = [(g["stage"], (g["t_ms"] - prev["t_ms"]) / 1000) for prev, g in pairwise(log)]
    floor = len(stages) * opts.soak
    print(f"closed loop labels -> m-0002 active on {len(names)} gateways: {total:.1f} s "
          f"(soak floor {floor:.0f} s: {len(stages)} stages x {opts.soak:g} s)")
    _part("labels", (t["labels"] - t["t0"]) / 1000, total, f"{t['labels_n']} labels via API")
    _part("dataset build", (t["dataset"] - t["labels"]) / 1000, total)
    card = t["card"]
    _part("training", (t["train"] - t["dataset"]) / 1000, total,
          f"{opts.epochs} epochs, head-only, F1 {card['metrics']['f1']:.3f}, "
          f"{card['size']:,} B int8")
    _part("register+release", (t["release"] - t["train"]) / 1000, total,
          "register, promote, POST rollout")
    for stage, seconds in stages:
        _part(f"stage {stage}", seconds, total, f"soak {opts.soak:g} s, ratio "
              f"{seconds / opts.soak:.2f}" if opts.soak else "")
    _part("settled", (t["end"] - log[-1]["t_ms"]) / 1000, total,
          f"last gateway active {(t['active'] - log[-2]['t_ms']) / 1000:.2f} s into "
          f"stage {log[-1]['stage']}")
    _transfer(lines, opts, "baseline", "m-0001 full artefact")
    _transfer(lines, opts, "loop", "m-0002, the smallest artefact a gateway can use")
    _inference(t["reports"])


def _part(label: str, seconds: float, total: float, note: str = "") -> None:
    share = seconds / total if total else 0.0
    print(f"  {label:<22} {seconds:7.2f} s  ({share:5.1%}){'  ' + note if note else ''}")


def _transfer(lines: GatewayLines, opts: Options, phase: str, what: str) -> None:
    """Per gateway: bytes and time, and the rate past the token bucket's burst vs the limit."""
    rates = []
    for (when, name), chunks in sorted(lines.transfers.items()):
        if when != phase:
            continue
        t_first, t_last = chunks.seen[0][0], chunks.seen[-1][0]
        print(f"transfer {phase} {name} ({what}): {chunks.size:,} B in {len(chunks.seen)} "
              f"chunks of <= {opts.chunk} B, {(t_last - t_first) / 1000:.2f} s first to last chunk")
        limited = [(t, off) for t, off in chunks.seen if off > BURST]
        if len(limited) >= 2 and limited[-1][0] > limited[0][0]:
            rates.append((limited[-1][1] - limited[0][1]) * 1000
                         / (limited[-1][0] - limited[0][0]))
    if not rates:
        print(f"transfer rate {phase}: 0 B/s measured (within the {BURST} B burst)")
        return
    worst = max(rates)
    print(f"transfer rate {phase}: {worst:,.0f} B/s effective past the {BURST} B burst (highest "
          f"gateway) vs limit {opts.rate:,} B/s (ratio {worst / opts.rate:.2f})")


def _inference(reports: list[dict[str, Any]]) -> None:
    """p99 per window of the new model over every report for it (shadow and active)."""
    counts = [0] * (len(LATENCY_BOUNDS_MS) + 1)
    worst = 0.0
    for report in reports:
        for i, n in enumerate(report["detail"].get("counts", [])):
            counts[i] += int(n)
        if report["windows"]:
            worst = max(worst, float(report["latency_p99_ms"]))
    total = sum(counts)
    p99, seen = float("inf"), 0
    for bound, n in zip((*LATENCY_BOUNDS_MS, float("inf")), counts, strict=True):
        seen += n
        if total and seen >= 0.99 * total:
            p99 = bound
            break
    print(f"inference p99 per window (m-0002): <= {p99:g} ms over {total} windows, goal "
          f"{P99_GOAL_MS:g} ms (ratio {p99 / P99_GOAL_MS:.2f}); worst report period "
          f"{worst:g} ms")


def _options(argv: Sequence[str] | None) -> Options:
    parser = argparse.ArgumentParser(prog="tandem bench modelloop",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--gateways", type=int, default=3, help="gateways in the group")
    parser.add_argument("--devices", type=int, default=6, help="simulated fleet devices")
    parser.add_argument("--windows", type=int, default=60, help="windows per device")
    parser.add_argument("--epochs", type=int, default=5, help="training epochs per version")
    parser.add_argument("--rate", type=int, default=1024,
                        help="[models] rate_bytes_s per gateway (bytes/s)")
    parser.add_argument("--chunk", type=int, default=256, help="artefact chunk bytes")
    parser.add_argument("--soak", type=float, default=2.0, help="soak window per stage (s)")
    parser.add_argument("--min-windows", type=int, default=4,
                        help="windows per gateway before a gate is judged")
    parser.add_argument("--wave-size", type=int, default=1, help="gateways per wave")
    args = parser.parse_args(argv)
    return Options(args.gateways, args.devices, args.windows, args.epochs, args.rate,
                   args.chunk, args.soak, args.min_windows, args.wave_size)


if __name__ == "__main__":
    raise SystemExit(main())
