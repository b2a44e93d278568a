"""`tandem-cloud serve`: the app under gunicorn, one app (and database engine) per worker process.

The master process checks the configuration and prepares the database once
(create_app, then close), binds the port and forks the workers; each worker
builds its own app after the fork, so no database connection crosses a fork.
The master runs no thread of its own (a thread's locks would be copied into
every fork): the retention prune runs in whichever worker holds the prune lock
(prunelock.py). The master tells systemd READY=1 when it listens (Type=notify).
"""

from __future__ import annotations

import logging
import ssl
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from flask import Flask
from gunicorn.app.base import BaseApplication
from gunicorn.arbiter import Arbiter

from tandem.cloud import close_app, create_app
from tandem.cloud.config import CloudConfig
from tandem.cloud.db import engine as database
from tandem.cloud.metrics import metrics
from tandem.cloud.serving import sharedmetrics
from tandem.cloud.serving.prunelock import PruneLock
from tandem.cloud.serving.worker import Deadlines, with_deadlines
from tandem.cloud.timeseries import retention
from tandem.cloud.timeseries import store as timeseries

log = logging.getLogger(__name__)

PROG = "tandem-cloud"
PRUNE_LOCK_FILE = "prune.lock"
_TIMER = "tandem.serving.prune_timer"


@dataclass(frozen=True)
class Listening:
    """Where the service listens; tls is None for plain HTTP (development only)."""

    host: str
    port: int
    tls: ssl.SSLContext | None
    cert: Path | None = None
    key: Path | None = None

    @property
    def scheme(self) -> str:
        """https, or http without TLS."""
        return "http" if self.tls is None else "https"


class CloudServer(BaseApplication):  # type: ignore[misc]  # gunicorn has no type hints
    """gunicorn running create_app(config) in config.server.workers processes."""

    def __init__(self, config: CloudConfig, listening: Listening) -> None:
        self.config = config
        self.listening = listening
        super().__init__(prog=PROG)

    def load_config(self) -> None:
        """gunicorn's settings, from the cloud's config only (no gunicorn.conf.py, no argv)."""
        for name, value in gunicorn_settings(self.config, self.listening).items():
            self.cfg.set(name, value)
        self.cfg.set("when_ready", self._when_ready)
        self.cfg.set("post_worker_init", self._post_worker_init)
        self.cfg.set("worker_exit", _worker_exit)
        self.cfg.set("child_exit", lambda _arbiter, worker: sharedmetrics.worker_gone(worker.pid))
        if self.listening.tls is not None:
            tls = self.listening.tls
            self.cfg.set("ssl_context", lambda _config, _default: tls)

    def load(self) -> Flask:
        """Build this worker's app (runs in the worker, after the fork)."""
        return create_app(self.config)

    def _when_ready(self, arbiter: Arbiter) -> None:
        port = arbiter.LISTENERS[0].sock.getsockname()[1]
        print(f"{PROG} listening on {self.listening.scheme}://{self.listening.host}:{port}",
              flush=True)

    def _post_worker_init(self, worker: Any) -> None:
        """Count slow clients in the app's metrics; start the prune timer (lock holder prunes)."""
        interval = self.config.timeseries.prune_interval_s
        app = worker.wsgi
        if isinstance(app, Flask):
            closed = metrics(app).slow_clients_closed
            worker.on_slow_client = lambda stage: closed.labels(stage).inc()
        if interval and isinstance(app, Flask):
            lock = PruneLock(self.config.data_dir / PRUNE_LOCK_FILE)
            timer = retention.PruneTimer(lambda: _prune_if_holder(app, lock), interval)
            app.extensions[_TIMER] = timer
            timer.start()


def gunicorn_settings(config: CloudConfig, listening: Listening) -> dict[str, Any]:
    """gunicorn's settings for config: workers, threads, limits, deadlines, TLS files."""
    server = config.server
    settings: dict[str, Any] = {
        "bind": [f"{listening.host}:{listening.port}"],
        "workers": server.workers,
        "threads": server.threads,
        "worker_connections": server.max_connections,
        "worker_class": with_deadlines(Deadlines(handshake_s=server.handshake_timeout_s,
                                                 header_s=server.header_timeout_s,
                                                 body_s=server.body_timeout_s)),
        "keepalive": 5,  # idle kept-alive connections close after this, s
        "timeout": 60,  # a worker whose event loop stalls this long is restarted
        "graceful_timeout": 20,  # SIGTERM: requests in flight get this long to finish
        "proc_name": PROG,
        "errorlog": "-",
        "loglevel": "info",
        "control_socket_disable": True,  # one fixed socket path per user; sites run several
    }
    if listening.tls is not None:
        settings |= {"certfile": str(listening.cert), "keyfile": str(listening.key)}
    return settings


def _prune_if_holder(app: Flask, lock: PruneLock) -> dict[str, int]:
    if not lock.acquire():
        return {}  # another worker prunes
    config: CloudConfig = app.config["TANDEM"]
    return retention.prune(config, timeseries.store(app), database.sessions(app))


def _worker_exit(_arbiter: Arbiter, worker: Any) -> None:
    app = getattr(worker, "wsgi", None)
    if isinstance(app, Flask):
        timer = app.extensions.get(_TIMER)
        if isinstance(timer, retention.PruneTimer):
            timer.stop()
        close_app(app)


def serve(config: CloudConfig, listening: Listening,
          on_stopped: Callable[[], None] = lambda: None) -> int:
    """Serve until SIGTERM/SIGINT; return the exit status (0 after a clean stop)."""
    close_app(create_app(config))  # refuse a bad config or database before forking anything
    sharedmetrics.prepare(config.data_dir)  # the workers' metrics, summed on /metrics
    try:
        CloudServer(config, listening).run()
    except SystemExit as stop:  # gunicorn's arbiter leaves through sys.exit
        status = stop.code if isinstance(stop.code, int) else 1
    else:
        status = 0
    on_stopped()
    sys.stdout.flush()
    return status
