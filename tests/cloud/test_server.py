"""serve_until_signalled: a signal stops the server and leaves no thread behind."""

from __future__ import annotations

import os
import signal
import threading

import httpx
import pytest

from tandem.cloud.server import bind, serve_until_signalled


@pytest.mark.timeout(30)
def test_sigterm_stops_serving_and_joins_every_thread(app):
    threads_before = set(threading.enumerate())
    server = bind(app, "127.0.0.1", 0, None)
    answers: list[int] = []

    def client_then_sigterm() -> None:
        try:
            answers.append(httpx.get(f"http://127.0.0.1:{server.server_port}/healthz").status_code)
        finally:
            os.kill(os.getpid(), signal.SIGTERM)

    previous = signal.getsignal(signal.SIGTERM)
    client = threading.Thread(target=client_then_sigterm)
    serve_until_signalled(server, on_ready=client.start)
    client.join(timeout=10)
    assert answers == [200]
    assert signal.getsignal(signal.SIGTERM) is previous
    assert set(threading.enumerate()) == threads_before
