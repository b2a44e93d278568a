"""Task runners the worker-pool tests hand to worker processes (importable, so picklable)."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any


def report_priority(kind: str, args: dict[str, Any]) -> dict[str, Any]:
    """Which scheduling policy and niceness the worker runs at, and its pid."""
    return {"policy": os.sched_getscheduler(0), "nice": os.nice(0), "pid": os.getpid()}


def gated(kind: str, args: dict[str, Any]) -> dict[str, Any]:
    """Log the run, say it started (pid), then wait for the test to open the gate."""
    with open(args["log"], "a") as log:
        log.write(f"{kind}\n")
    started = Path(args["started"])
    started.with_suffix(".tmp").write_text(str(os.getpid()))
    started.with_suffix(".tmp").replace(started)  # atomic: the test never reads it half-written
    while not Path(args["gate"]).exists():
        time.sleep(0.005)  # a gate the test opens: polled, never a fixed sleep
    if kind == "fail":
        raise ValueError("bad input")
    return {"kind": kind, "pid": os.getpid()}
