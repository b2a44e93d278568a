"""The TLS context, and an in-process Werkzeug server for tests (production: cloud/serving)."""

from __future__ import annotations

import signal
import ssl
import threading
from collections.abc import Callable
from pathlib import Path
from types import FrameType

from flask import Flask
from werkzeug.serving import BaseWSGIServer, make_server


def tls_context(cert: Path, key: Path) -> ssl.SSLContext:
    """A server TLS context (1.2 or later) presenting cert."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(cert, key)
    return context


def bind(app: Flask, host: str, port: int, context: ssl.SSLContext | None) -> BaseWSGIServer:
    """Listen on host:port (port 0 picks a free one) without serving yet."""
    return make_server(host, port, app, threaded=True, ssl_context=context)


def serve_until_signalled(server: BaseWSGIServer,
                          on_ready: Callable[[], None] = lambda: None) -> None:
    """Serve until SIGINT or SIGTERM, then stop accepting and finish open requests."""
    stop = threading.Event()

    def _request_stop(_signum: int, _frame: FrameType | None) -> None:
        stop.set()

    previous = {s: signal.signal(s, _request_stop) for s in (signal.SIGINT, signal.SIGTERM)}
    worker = threading.Thread(target=server.serve_forever, name="tandem-cloud-http")
    worker.start()
    try:
        on_ready()
        stop.wait()
    finally:
        # shutdown() waits for serve_forever to return, so it runs here, not in the handler
        server.shutdown()
        worker.join()
        server.server_close()
        for signum, handler in previous.items():
            signal.signal(signum, handler)
