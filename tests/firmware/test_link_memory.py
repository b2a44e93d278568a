"""The DTLS link in real MicroPython when the heap is full at a receive: the node is told the
link failed (OSError ENOMEM), so it drops the session and keeps its reports, instead of dying
with MemoryError (seen in the soak after a gateway outage)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.nodeproc import run_snippet

pytestmark = pytest.mark.timeout(60)

# The socket is a stand-in: this is about the link's own logic, not DTLS.
SCRIPT = """
import json
from link import DtlsLink

class FullHeap:
    def recv(self, n):
        raise MemoryError("memory allocation failed, allocating %d bytes" % (n + 1))
    def close(self):
        pass

link = DtlsLink(None, "127.0.0.1", 5684, "gw-01")
link.sock = FullHeap()
link.up = True
try:
    link.recv()
    out = {"raised": None}
except OSError as e:
    out = {"raised": "OSError", "errno": e.args[0]}
except MemoryError:
    out = {"raised": "MemoryError"}
link.close()
out["closed"] = link.sock is None and not link.up
print(json.dumps(out))
"""


def test_a_receive_that_finds_the_heap_full_fails_the_link_not_the_node(tmp_path: Path) -> None:
    out = run_snippet(SCRIPT, tmp_path)
    assert out == {"raised": "OSError", "errno": 12, "closed": True}
