"""Metrics shared by every gunicorn worker: prometheus_client's multiprocess mode.

Each worker keeps its own counters, so without this a scrape of /metrics saw
only the worker that answered it. Before forking, the master points
PROMETHEUS_MULTIPROC_DIR at an emptied directory under the data dir; each
worker's metrics then live in memory-mapped files there, and /metrics
(cloud/metrics.py `exposition`) sums them. A worker that exits is marked dead
so its live gauges go; its counters stay in the sums, as a counter must.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from prometheus_client import multiprocess, values

ENV = "PROMETHEUS_MULTIPROC_DIR"
DIRECTORY = "prometheus"


def prepare(data_dir: Path) -> Path:
    """Empty the shared directory and switch metrics created from now on to it (the master)."""
    directory = data_dir / DIRECTORY
    shutil.rmtree(directory, ignore_errors=True)  # counters restart with the service
    directory.mkdir(parents=True)
    os.environ[ENV] = str(directory)
    # prometheus_client picks the value class at import; metrics made after this share files.
    values.ValueClass = values.get_value_class()  # type: ignore[no-untyped-call]
    return directory


def worker_gone(pid: int) -> None:
    """Drop the live gauges of a worker that exited (its counters stay summed)."""
    if os.environ.get(ENV):
        multiprocess.mark_process_dead(pid)  # type: ignore[no-untyped-call]
