"""Training on a simulated fleet: time, size, quality, deltas between head-only versions, p99.

A fleet of simulated machines (tools/simfleet.py: normal, bearing fault and
overheat scenarios from firmware/sim.py) gives window summaries. The first
version trains with operators' labels on the test period only (for scoring);
later versions retrain the head after a round of labels on the training and
validation periods too. For each version: training time, held-out F1, size,
compressed size and the bsdiff4 delta from its parent (goal: delta <= 15 %
of the compressed full model). Then LiteRT's per-window inference p99.
"""

from __future__ import annotations

import argparse
import tempfile
import time
import zlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from tandem.cloud.training import dataset as datasets
from tandem.cloud.training import evaluate
from tandem.cloud.training.train import MODEL_FILE, TrainRequest, train_job
from tandem.tools import simfleet
from tandem.wire.modelcard import InputSpec
from tandem.wire.modeldelta import apply_delta, compress_full, make_delta

DELTA_GOAL = 0.15


def main(argv: Sequence[str] | None = None) -> int:
    """Train the versions, print their table, quality and inference p99."""
    args = _parser().parse_args(argv)
    fleet = simfleet.fleet(args.devices, args.windows, growth=args.growth)
    w = args.windows
    rule = datasets.SplitRule(fleet.t0(w * 6 // 10), fleet.t0(w * 8 // 10))
    with tempfile.TemporaryDirectory(prefix="tandem-train-") as tmp:
        root = Path(tmp)
        first = _dataset(root / "first.npz", fleet, rule, labels_from=w * 8 // 10)
        relabelled = _dataset(root / "labelled.npz", fleet, rule, labels_from=0)
        print(f"dataset              : {args.devices} devices x {w} windows, "
              f"{len(first.features)} features")
        print(f"{'version':<8}{'train s':>9}{'F1':>7}{'AUC':>7}{'full B':>9}{'xz B':>8}"
              f"{'zlib B':>8}{'delta B':>9}{'delta/xz':>10}")
        parent: Path | None = None
        worst = 0.0
        for n in range(1, args.versions + 1):
            out = root / f"v{n}"
            started = time.perf_counter()
            card = train_job(TrainRequest(root / ("first.npz" if n == 1 else "labelled.npz"),
                                          out, f"m-{n:04d}", parent, seed=n, epochs=args.epochs))
            took = time.perf_counter() - started
            model = (out / MODEL_FILE).read_bytes()
            xz = compress_full(model)
            delta = b""
            if parent is not None:
                old = (parent / MODEL_FILE).read_bytes()
                delta = make_delta(old, model)
                assert apply_delta(old, delta) == model
                worst = max(worst, len(delta) / len(xz))
            share = f"{len(delta) / len(xz):>9.1%}" if delta else f"{'-':>9}"
            print(f"m-{n:04d}  {took:>9.1f}{card.metrics['f1']:>7.3f}"
                  f"{card.metrics['roc_auc']:>7.3f}{len(model):>9,}{len(xz):>8,}"
                  f"{len(zlib.compress(model, 9)):>8,}{len(delta):>9,} {share}")
            if n == 1:
                first_f1 = card.metrics["f1"]
            parent = out
        assert parent is not None
        print(f"training time        : {took:.1f} s (last version, head only)")
        print(f"model size           : {card.size:,} B int8")
        print(f"held-out F1          : {first_f1:.3f} first, {card.metrics['f1']:.3f} after a "
              f"round of labels")
        if args.versions > 1:
            print(f"worst delta / xz     : {worst:.1%} (goal <= {DELTA_GOAL:.0%})")
        p50, p99 = _inference(model, card.input, relabelled)
        print(f"inference p50 / p99  : {p50:.1f} / {p99:.1f} us per window (LiteRT, int8)")
    return 0


def _dataset(path: Path, fleet: simfleet.SimFleet, rule: datasets.SplitRule,
             labels_from: int) -> datasets.Dataset:
    built = datasets.build(simfleet.summaries(fleet),
                           simfleet.labels(fleet, labels_from, fleet.windows), rule)
    datasets.save(built, path)
    return built


def _inference(model: bytes, spec: InputSpec, data: datasets.Dataset) -> tuple[float, float]:
    """Per-window scoring time in microseconds (p50, p99): scale, invoke, score."""
    scorer = evaluate.Scorer(model, spec)
    rows = data.x[: min(len(data.x), 2000)]
    for row in rows[:10]:
        scorer.score(row)  # warm up
    times = []
    for row in rows:
        started = time.perf_counter_ns()
        scorer.score(row)
        times.append((time.perf_counter_ns() - started) / 1000)
    return float(np.percentile(times, 50)), float(np.percentile(times, 99))


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tandem bench training",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--devices", type=int, default=12)
    parser.add_argument("--windows", type=int, default=120)
    parser.add_argument("--epochs", type=int, default=60)
    parser.add_argument("--versions", type=int, default=4, help="first + head-only versions")
    parser.add_argument("--growth", type=int, default=20,
                        help="faults grow this many times slower than the host board's")
    return parser
