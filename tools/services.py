"""Throwaway storage servers for tests and benchmarks: a real influxd and a real PostgreSQL.

Each is a context manager that starts the server in a fresh temporary
directory on free loopback ports, waits until it answers (influxd's /ping,
`pg_ctl -w` plus a connect), and on the way out, also after a failure, stops
the process and removes the directory. Nothing listens on a fixed port and
nothing outside the temporary directory is touched.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx

from tandem.tools.procs import Child, ProcessFailed

PG_ROOTS = (Path("/usr/lib/postgresql"),)
PG_USER = "postgres"  # initdb refuses to run as root; as root we run it as this user
START_ATTEMPTS = 3  # a free port can be taken between choosing it and binding it


class ServiceError(RuntimeError):
    """A storage server that could not be found, started or stopped."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing is bound to right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass(frozen=True)
class InfluxServer:
    """A running influxd: its v1 HTTP API at url."""

    url: str
    root: Path
    child: Child


def influxd_config(root: Path, http_port: int, rpc_port: int) -> str:
    """An influxd 1.x config keeping everything under root and on loopback, quietly."""
    return f"""reporting-disabled = true
bind-address = "127.0.0.1:{rpc_port}"
[meta]
  dir = "{root / 'meta'}"
  logging-enabled = false
[data]
  dir = "{root / 'data'}"
  wal-dir = "{root / 'wal'}"
  query-log-enabled = false
  wal-fsync-delay = "0s"
[monitor]
  store-enabled = false
[http]
  bind-address = "127.0.0.1:{http_port}"
  log-enabled = false
[logging]
  level = "warn"
  suppress-logo = true
"""


@contextlib.contextmanager
def influxd(timeout: float = 30.0, binary: str = "influxd") -> Iterator[InfluxServer]:
    """Run influxd in a temporary directory until the block ends."""
    path = shutil.which(binary)
    if path is None:
        raise ServiceError(f"{binary} not found: install the Debian package 'influxdb'")
    root = Path(tempfile.mkdtemp(prefix="tandem-influxd-"))
    try:
        server = _start_influxd(path, root, timeout)
        try:
            yield server
        finally:
            server.child.stop()
    finally:
        shutil.rmtree(root, ignore_errors=True)


def _start_influxd(path: str, root: Path, timeout: float) -> InfluxServer:
    for attempt in range(1, START_ATTEMPTS + 1):
        http_port = free_port()
        config = root / "influxd.conf"
        config.write_text(influxd_config(root, http_port, free_port()), encoding="utf-8")
        child = Child("influxd", [path, "run", "-config", str(config)])
        url = f"http://127.0.0.1:{http_port}"
        try:
            _wait_for_ping(child, url, timeout)
        except BaseException as exc:  # stop the child whatever went wrong, even Ctrl-C
            child.stop()
            port_taken = isinstance(exc, ProcessFailed) and "address already in use" in child.tail()
            if attempt < START_ATTEMPTS and port_taken:
                continue
            raise
        return InfluxServer(url=url, root=root, child=child)
    raise AssertionError("unreachable")


def _wait_for_ping(child: Child, url: str, timeout: float) -> None:
    """Poll /ping until 204; waiting between polls on the process, which must not exit."""
    deadline = time.monotonic() + timeout
    with httpx.Client(timeout=2.0) as http:
        while True:
            with contextlib.suppress(httpx.TransportError):
                if http.get(f"{url}/ping").status_code == 204:
                    return
            if time.monotonic() > deadline:
                raise ProcessFailed(f"influxd did not answer /ping in {timeout:g} s:\n"
                                    f"{child.tail()}")
            with contextlib.suppress(subprocess.TimeoutExpired):
                child.proc.wait(timeout=0.05)
                child.wait_for("(?!)", timeout=1.0)  # raises ProcessFailed with its last lines


@dataclass(frozen=True)
class PostgresCluster:
    """A running PostgreSQL cluster reachable on 127.0.0.1:port with trust authentication."""

    port: int
    root: Path
    bin_dir: Path
    user: str = PG_USER

    def url(self, database: str = "postgres", driver: str = "postgresql+psycopg") -> str:
        """An SQLAlchemy URL for database as the superuser."""
        return f"{driver}://{self.user}@127.0.0.1:{self.port}/{database}"

    @property
    def socket_dir(self) -> Path:
        """Where the server's unix socket lives (inside root, not /var/run)."""
        return self.root



@contextlib.contextmanager
def scratch_database(cluster: PostgresCluster, name: str) -> Iterator[str]:
    """The SQLAlchemy URL of a new empty database called name, dropped afterwards."""
    from sqlalchemy import create_engine, text  # the cloud's extra; only its users need it

    admin = create_engine(cluster.url(), isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
        try:
            yield cluster.url(name)
        finally:
            with admin.connect() as conn:
                conn.execute(text(f'DROP DATABASE "{name}" WITH (FORCE)'))
    finally:
        admin.dispose()


def postgres_bin_dir() -> Path:
    """The bin directory of the newest installed PostgreSQL server."""
    found = sorted((p for root in PG_ROOTS if root.is_dir() for p in root.glob("*/bin")
                    if (p / "pg_ctl").exists() and p.parent.name.isdigit()),
                   key=lambda p: int(p.parent.name))
    if not found:
        raise ServiceError("PostgreSQL server binaries not found under /usr/lib/postgresql: "
                           "install the Debian package 'postgresql'")
    return found[-1]


@contextlib.contextmanager
def postgres(timeout: float = 60.0) -> Iterator[PostgresCluster]:
    """Run a throwaway PostgreSQL cluster in a temporary directory until the block ends."""
    bin_dir = postgres_bin_dir()
    root = Path(tempfile.mkdtemp(prefix="tandem-pg-"))
    try:
        _hand_to_postgres_user(root)
        _run(_as_pg_user(str(bin_dir / "initdb"), "-D", str(root / "data"), "-A", "trust",
                         "-U", PG_USER, "-E", "UTF8", "--no-sync", "--no-instructions"),
             timeout)
        cluster = _start_cluster(bin_dir, root, timeout)
        try:
            yield cluster
        finally:
            _stop_cluster(bin_dir, root, timeout)
    finally:
        shutil.rmtree(root, ignore_errors=True)


def _start_cluster(bin_dir: Path, root: Path, timeout: float) -> PostgresCluster:
    for attempt in range(1, START_ATTEMPTS + 1):
        port = free_port()
        options = (f"-c listen_addresses=127.0.0.1 -p {port} -k {root} -c fsync=off "
                   f"-c synchronous_commit=off -c full_page_writes=off")
        try:
            _run(_as_pg_user(str(bin_dir / "pg_ctl"), "-D", str(root / "data"), "-o", options,
                             "-l", str(root / "server.log"), "-t", str(int(timeout)), "-w",
                             "start"), timeout + 5)
        except ServiceError:
            log = (root / "server.log").read_text(errors="replace")
            if attempt == START_ATTEMPTS or "could not bind" not in log:
                raise ServiceError(f"PostgreSQL did not start:\n{log[-3000:]}") from None
            continue
        _wait_for_connect(port, timeout)
        return PostgresCluster(port=port, root=root, bin_dir=bin_dir)
    raise AssertionError("unreachable")


def _stop_cluster(bin_dir: Path, root: Path, timeout: float) -> None:
    """pg_ctl stop; if that fails, kill the postmaster named in its pid file."""
    try:
        _run(_as_pg_user(str(bin_dir / "pg_ctl"), "-D", str(root / "data"), "-m", "fast",
                         "-w", "stop"), timeout)
    except ServiceError:
        pid_file = root / "data" / "postmaster.pid"
        with contextlib.suppress(OSError, ValueError, IndexError):
            os.kill(int(pid_file.read_text().split()[0]), signal.SIGKILL)
        raise


def _wait_for_connect(port: int, timeout: float) -> None:
    """pg_ctl -w already waited; confirm that a TCP connection to the port is accepted."""
    try:
        socket.create_connection(("127.0.0.1", port), timeout=timeout).close()
    except OSError as exc:
        raise ServiceError(f"PostgreSQL started but 127.0.0.1:{port} refuses: {exc}") from None


def _hand_to_postgres_user(root: Path) -> None:
    if os.geteuid() == 0:
        shutil.chown(root, PG_USER, PG_USER)


def _as_pg_user(*argv: str) -> list[str]:
    """argv, run as the postgres user when we are root (initdb refuses root)."""
    return ["runuser", "-u", PG_USER, "--", *argv] if os.geteuid() == 0 else list(argv)


def _run(argv: list[str], timeout: float) -> None:
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout,
                              check=False, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        raise ServiceError(f"{argv[0]} timed out after {timeout:g} s: {' '.join(argv)}") from None
    if done.returncode != 0:
        raise ServiceError(f"{' '.join(argv)} failed ({done.returncode}):\n"
                           f"{done.stdout[-2000:]}{done.stderr[-2000:]}")


@dataclass(frozen=True)
class RedisServer:
    """A running redis-server: its URL, temporary directory and process."""

    url: str
    root: Path
    child: Child


@contextlib.contextmanager
def redis(timeout: float = 30.0, binary: str = "redis-server") -> Iterator[RedisServer]:
    """Run redis-server on loopback, a free port and a temporary directory until the block ends."""
    path = shutil.which(binary)
    if path is None:
        raise ServiceError(f"{binary} not found: install the Debian package 'redis-server'")
    root = Path(tempfile.mkdtemp(prefix="tandem-redis-"))
    try:
        for attempt in range(1, START_ATTEMPTS + 1):
            port = free_port()
            child = Child("redis", [path, "--bind", "127.0.0.1", "--port", str(port),
                                    "--dir", str(root), "--save", "", "--appendonly", "no"])
            try:
                child.wait_for(r"Ready to accept connections", timeout)
            except BaseException:  # stop the child whatever went wrong, even Ctrl-C
                child.stop()
                if attempt < START_ATTEMPTS and "Address already in use" in child.tail():
                    continue
                raise
            try:
                yield RedisServer(f"redis://127.0.0.1:{port}/0", root, child)
            finally:
                child.stop()
            return
    finally:
        shutil.rmtree(root, ignore_errors=True)
