"""Specification of stopping a tool: SIGTERM and SIGINT alike leave none of its processes behind.

A benchmark runs as `tandem bench ...` in its own session; once it says its
children are up, every process descended from it is recorded from /proc. A
signal to the tool alone (as `timeout` or a CI kill sends it) must end the
tool and every one of those processes.
"""

from __future__ import annotations

import os
import shutil
import signal
import sys
import time
from pathlib import Path

import pytest

from tandem.tools.procs import Child

# (bench options, the line it prints once its children are up)
BENCHES = {
    "latency": (["--reports", "1000", "--period-ms", "200"], r"site up:"),
    "coap": (["--peers", "2", "--workers", "2", "--seconds", "600"],
             r"generator processes started"),
    "drain": (["--records", "20000", "--batch", "100", "--quiet"], r"cloud up"),
    "surge": (["--trips", "100000", "--rounds", "1", "--workers", "2", "--phases", "surge-here"],
              r"phase surge-here: 2 workers busy"),
    "fleet-ingest": (["--gateways", "2", "--seconds", "600", "--workers", "2"], r"cloud up"),
}


def _process_table() -> dict[int, tuple[int, str]]:
    """pid -> (parent pid, start time): the start time tells a reused pid apart."""
    table = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as stat:
                    fields = stat.read().rsplit(")", 1)[1].split()
            except (FileNotFoundError, ProcessLookupError):
                continue  # ended while we looked
            if fields[0] != "Z":
                table[int(entry)] = (int(fields[1]), fields[19])
    return table


def descendants(root: int) -> set[tuple[int, str]]:
    """Every live process whose parent chain leads to root, as (pid, start time)."""
    table = _process_table()
    found: set[tuple[int, str]] = set()
    frontier = {root}
    while frontier:
        children = {pid for pid, (ppid, _) in table.items() if ppid in frontier}
        found |= {(pid, table[pid][1]) for pid in children}
        frontier = children
    return found


def alive(processes: set[tuple[int, str]]) -> set[tuple[int, str]]:
    table = _process_table()
    return {(pid, start) for pid, start in processes if table.get(pid, (0, ""))[1] == start}


@pytest.mark.timeout(180)
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
@pytest.mark.parametrize("bench", sorted(BENCHES))
def test_a_stopped_bench_leaves_no_process_behind(bench: str, sig: int) -> None:
    tandem = shutil.which("tandem", path=str(Path(sys.executable).parent))
    assert tandem
    options, ready = BENCHES[bench]
    tool = Child(bench, [tandem, "bench", bench, *options])
    try:
        tool.wait_for(ready, timeout=120)
        started = descendants(tool.proc.pid)
        assert started, "the bench started no process"
        os.kill(tool.proc.pid, sig)  # the tool alone, not its process group
        code = tool.proc.wait(60)
    finally:
        tool.stop()
    assert code == 128 + sig, tool.tail()
    deadline = time.monotonic() + 10  # a SIGKILLed child may take a moment to be reaped
    while alive(started) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not alive(started), f"left running: {alive(started)}\n{tool.tail()}"
