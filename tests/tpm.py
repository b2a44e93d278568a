"""A software TPM (swtpm) for tests: free ports, absolute state dir, always stopped.

    with SoftwareTpm(tmp_path / "tpm") as tpm:
        store = TpmKeyStore(tpm.tcti, state_dir)
        tpm.restart()          # same state dir, new process (and ports)

or, in a test module, the `swtpm` fixture from `swtpm_fixture()`. The state
dir must be absolute: swtpm silently enters failure mode with a relative one.
The swtpm TCTI has no control-port option: it uses port+1, so the two ports
are chosen as a free consecutive pair. `TSS2_LOG=all+none` is set so expected
TPM errors (a refused unseal) do not flood the test output.

TensorFlow and tpm2-tss segfault when both live in one process (create_primary
crashes): tests train in child processes, and `start` refuses loudly if a test
loaded TensorFlow here anyway, instead of letting the whole run die.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType

import pytest

from tests.ports import free_port

START_TIMEOUT_S = 5.0
os.environ.setdefault("TSS2_LOG", "all+none")  # read by tpm2-tss when it first logs


def swtpm_available() -> bool:
    """True when the swtpm binary and the swtpm TCTI of tpm2-tss are installed."""
    try:
        import tpm2_pytss  # noqa: F401
    except ImportError:
        return False
    return shutil.which("swtpm") is not None


class SoftwareTpm:
    """One swtpm process in TCP socket mode; restartable on the same state."""

    def __init__(self, state_dir: Path) -> None:
        self.state_dir = state_dir.resolve()
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.port = 0
        self.ctrl_port = 0
        self.start_s = 0.0
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def tcti(self) -> str:
        """The TCTI string naming this TPM."""
        return f"swtpm:host=127.0.0.1,port={self.port}"

    def start(self) -> None:
        """Start swtpm on fresh free ports and wait until it accepts connections."""
        if self._proc is not None:
            raise RuntimeError("swtpm already running")
        if "tensorflow" in sys.modules:
            raise RuntimeError("TensorFlow is loaded in this test process; tpm2-tss segfaults "
                               "beside it: train in a child process (tests/cloud/test_training)")
        self.port = _free_port_pair()
        self.ctrl_port = self.port + 1
        began = time.perf_counter()
        self._proc = subprocess.Popen(
            ["swtpm", "socket", "--tpm2",
             "--tpmstate", f"dir={self.state_dir}",
             "--server", f"type=tcp,port={self.port},bindaddr=127.0.0.1",
             "--ctrl", f"type=tcp,port={self.ctrl_port},bindaddr=127.0.0.1",
             "--flags", "not-need-init,startup-clear",
             "--log", f"file={self.state_dir / 'swtpm.log'},level=1"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:
            self._wait_ready()
        except BaseException:
            self.stop()
            raise
        self.start_s = time.perf_counter() - began

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT_S
        assert self._proc is not None
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                err = self._proc.stderr.read().decode() if self._proc.stderr else ""
                raise RuntimeError(f"swtpm exited with {self._proc.returncode}: {err}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return
            except OSError:
                time.sleep(0.01)
        raise TimeoutError(f"swtpm not ready on port {self.port} after {START_TIMEOUT_S} s")

    def stop(self) -> None:
        """Stop the process (SIGTERM, then SIGKILL); a no-op when not running."""
        proc, self._proc = self._proc, None
        if proc is None:
            return
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)
        if proc.stderr:
            proc.stderr.close()

    def restart(self) -> None:
        """Stop and start again on the same state (like a reboot of the gateway)."""
        self.stop()
        self.start()

    @property
    def running(self) -> bool:
        """True while the swtpm process is alive."""
        return self._proc is not None and self._proc.poll() is None

    def __enter__(self) -> SoftwareTpm:
        self.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()


def _free_port_pair() -> int:
    """A free port P with P+1 free too: the swtpm TCTI expects the control port at P+1."""
    for _ in range(50):
        port = free_port()
        if port < 65535 and _is_free(port + 1):
            return port
    raise RuntimeError("no two consecutive free TCP ports on 127.0.0.1")


def _is_free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


needs_swtpm = pytest.mark.skipif(
    not swtpm_available(), reason="swtpm / tpm2-pytss not installed (make test installs them)")


@pytest.fixture
def swtpm(tmp_path: Path) -> Iterator[SoftwareTpm]:
    """A running software TPM with its state under tmp_path; stopped even on failure."""
    with SoftwareTpm(tmp_path / "swtpm-state") as tpm:
        yield tpm
