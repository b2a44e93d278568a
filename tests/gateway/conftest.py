"""Fixtures shared by the device-access tests: a site PKI, a recording sink, a running server.

A module that needs something else (another sink, a module-scoped site)
defines a fixture of the same name, which takes precedence.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.gateway.access_peers import RecordingSink, ServerThread, Site, make_site


@pytest.fixture
def site(tmp_path: Path) -> Site:
    """A site CA with a gateway and device identities in tmp_path."""
    return make_site(tmp_path)


@pytest.fixture
def sink() -> RecordingSink:
    """A ReportSink that keeps what it is given."""
    return RecordingSink()


@pytest.fixture
def server(site: Site, sink: RecordingSink) -> Iterator[ServerThread]:
    """The CoAP/DTLS server on its own thread, stopped after the test."""
    with ServerThread(site.config(), sink) as running:
        yield running
