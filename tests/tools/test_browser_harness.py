"""The browser harness: Debian's Chromium renders a loopback page and runs its script."""

from __future__ import annotations

import http.server
import threading
from collections.abc import Iterator

import pytest

from tests import browser as harness
from tests.browser import needs_chromium

# Fixtures shared by every page test, taken into this module by name.
browser = harness.browser
browser_page = harness.browser_page

PAGE = (
    b"<!doctype html><title>t</title><p id=x>static</p>"
    b"<script>document.getElementById('x').textContent='scripted'</script>"
)


@pytest.fixture
def page_server() -> Iterator[str]:
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(PAGE)))
            self.end_headers()
            self.wfile.write(PAGE)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()


@needs_chromium
def test_chromium_runs_page_scripts(browser_page: object, page_server: str) -> None:
    browser_page.goto(page_server)  # type: ignore[attr-defined]
    assert browser_page.locator("#x").text_content() == "scripted"  # type: ignore[attr-defined]
