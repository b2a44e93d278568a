"""Specification of the benchmarks: every registered bench runs with tiny parameters, exits 0
and prints its figure lines with numbers in them, so a bench that breaks turns `make test` red.

Values are not judged here (they depend on the machine and its load); the
README's figures come from the full-size runs.
"""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tandem.tools.cli import _BENCHES

_NUMBER = r"[-+]?\d[\d,]*(?:\.\d+)?"

# bench -> (tiny options, the labels of the lines that carry its figures)
SMOKE: dict[str, tuple[list[str], list[str]]] = {
    "alarm": (["--alarms", "4"], ["alarms measured", "alarm p50 / p99", "goal p99",
                                  "loopback RTT"]),
    "live": (["--samples", "3", "--units", "2"], ["values measured", "live p50 / p99",
                                                 "goal p99", "live lane uplink"]),
    "bytes": (["--nodes", "1", "--seconds", "2", "--samples", "32", "--window", "1"],
              ["reports acknowledged", "raw waveform bytes", "uplink bytes", "ratio"]),
    "catchup": (["--outage", "1", "--records", "50"], ["catch-up run 1", "catch-up worst"]),
    "rollout": (["--versions", "1", "--bands", "16", "--chunk", "512", "--rate", "1000000"],
                ["transfer v1", "resume after a cut"]),
    "console": (["--nodes", "20", "--loads", "2", "--versions", "2", "--groups", "1"],
                ["console worst p50", "/admin/console_models/", "/admin/console_raw/"]),
    "installer": (["--nodes", "20", "--units", "3", "--loads", "2", "--trips", "4",
                   "--rounds", "2", "--rate", "50"],
                  ["installer worst p50", "reflex quiet", "reflex polled",
                   "reflex p99 polled / quiet"]),
    "coap": (["--peers", "2", "--workers", "1", "--seconds", "1", "--handshake-concurrency", "2"],
             ["handshakes", "reports/s", "CoAP RTT", "gateway CPU", "gateway RSS"]),
    "drain": (["--records", "300", "--batch", "100", "--quiet"],
              ["outbox fill", "drain to null cloud", "drain to real cloud", "goal"]),
    "ingest": (["--points", "200", "--batch", "50", "--raw-batch", "50", "--series", "4"],
               ["influxdb raw", "influxdb cloud", "sqlite raw", "sqlite cloud", "cloud / raw"]),
    "latency": (["--reports", "2", "--period-ms", "200", "--window", "0.5"],
                ["readings measured", "latency p50 / max"]),
    "modbus": (["--seconds", "0.2"],
               ["raw pyserial", "pymodbus sync", "pymodbus async", "coordinator (3.5-char gap)"]),
    "schedule": (["--gateways", "10", "--seconds", "60"], ["simulated tasks"]),
    "offload": (["--surge", "3", "--scale", "0.02", "--strategies", "deadline-cost"],
                ["offload deadline-cost", "link bytes deadline-cost"]),
    "surge": (["--trips", "5", "--rounds", "1", "--rate", "50", "--devices", "5", "--workers",
               "1", "--queue", "3", "--iterations", "200000"],
              ["reflex idle", "reflex surge-here", "reflex surge-migrated",
               "reflex surge-normal-priority", "workers surge-here", "profile surge-here"]),
    "training": (["--devices", "6", "--windows", "40", "--epochs", "3", "--versions", "2"],
                 ["training time", "model size", "held-out F1", "worst delta / xz",
                  "inference p50 / p99"]),
    "modelloop": (["--gateways", "2", "--devices", "4", "--windows", "30", "--epochs", "1",
                   "--soak", "1", "--min-windows", "2", "--rate", "100000"],
                  ["closed loop labels", "dataset build", "training", "register+release",
                   "stage shadow", "stage canary", "stage wave:1", "transfer rate baseline",
                   "inference p99 per window"]),
    "modbus-fleet": (["--units", "3", "--dead", "1", "--seconds", "0.5", "--warmup", "0.3"],
                     ["rate", "accounting", "rss", "cpu"]),
    "node": (["--seconds", "3", "--pystone-passes", "2000"],
             ["pystone", "features", "encode", "send", "window"]),
    "reflex": (["--trips", "3", "--rate", "50", "--devices", "5", "--runs", "2", "--burn", "1"],
               ["reflex", "limits", "acked", "action", "notified", "eval", "background load",
                "summary: goal met in"]),
    "fleet-ingest": (["--gateways", "2", "--seconds", "3", "--workers", "1,2", "--rate", "50"],
                     ["workers 1:", "workers 1 latency p50 / p99 / max", "workers 1 5xx",
                      "workers 1 CPU s", "workers 2:", "workers 2 exactly once", "scaling"]),
}
# Benches that need an optional extra: skipped without it, except in CI (CI=true installs it).
NEEDS = {"training": "tensorflow", "modelloop": "tensorflow"}
# Benches that start a whole site (and train twice) get longer than the others' 110 s.
TIMEOUTS = {"modelloop": 300, "offload": 240}


def test_every_registered_bench_has_a_smoke_run() -> None:
    assert set(SMOKE) == set(_BENCHES)


def figure(output: str, label: str) -> float:
    """The first number on the line that starts with label (after padding)."""
    match = re.search(rf"^\s*{re.escape(label)}(?!\w)[^\d\n]*?({_NUMBER})", output, re.MULTILINE)
    assert match, f"no figure line {label!r} in:\n{output}"
    return float(match.group(1).replace(",", ""))


@pytest.mark.parametrize("bench", [
    pytest.param(b, marks=pytest.mark.timeout(TIMEOUTS.get(b, 110) + 10)) for b in sorted(SMOKE)])
def test_the_bench_runs_with_tiny_parameters_and_prints_its_figures(bench: str) -> None:
    tandem = shutil.which("tandem", path=str(Path(sys.executable).parent))
    assert tandem
    needed = NEEDS.get(bench)
    if needed and importlib.util.find_spec(needed) is None and os.environ.get("CI") != "true":
        pytest.skip(f"{bench} needs {needed} (the `train` extra); CI=true makes this a failure")
    options, labels = SMOKE[bench]
    done = subprocess.run([tandem, "bench", bench, *options], capture_output=True, text=True,
                          timeout=TIMEOUTS.get(bench, 110), stdin=subprocess.DEVNULL)
    assert done.returncode == 0, done.stdout + done.stderr
    for label in labels:
        figure(done.stdout, label)
