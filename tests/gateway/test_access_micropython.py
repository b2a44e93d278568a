"""Device access against MicroPython's DTLS client (mbedtls), the stack the nodes run."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from aiocoap import CHANGED
from aiocoap.message import Message

from tandem.tools.pki import Identity
from tests.gateway.access_peers import (
    RecordingSink,
    ServerThread,
    make_site,
    report_post,
    sample_report,
)
from tests.waiting import wait_until

MICROPYTHON = shutil.which("micropython", path=str(Path(sys.executable).parent))

pytestmark = [pytest.mark.timeout(60),
              pytest.mark.skipif(MICROPYTHON is None, reason="no MicroPython unix port")]

# One POST over DTLS as a node does it: connected, non-blocking socket; the
# handshake is driven by write() until it returns a count.
_CLIENT = """
import binascii, socket, ssl, sys, time
host, port, cert, key, ca, hexmsg = sys.argv[1:7]
def rd(p):
    with open(p, "rb") as f:
        return f.read()
ctx = ssl.SSLContext(ssl.PROTOCOL_DTLS_CLIENT)
ctx.verify_mode = ssl.CERT_REQUIRED
ctx.load_cert_chain(rd(cert), rd(key))
ctx.load_verify_locations(cadata=rd(ca))
ai = socket.getaddrinfo(host, int(port), 0, socket.SOCK_DGRAM)[0]
raw = socket.socket(ai[0], socket.SOCK_DGRAM)
raw.connect(ai[-1])
raw.setblocking(False)
s = ctx.wrap_socket(raw, server_side=False, do_handshake_on_connect=False,
                    server_hostname="gw-01")
t0 = time.ticks_ms()
while s.write(binascii.unhexlify(hexmsg)) is None:
    if time.ticks_diff(time.ticks_ms(), t0) > 10000:
        sys.exit("handshake timeout")
    time.sleep_ms(1)
print("HANDSHAKE_MS", time.ticks_diff(time.ticks_ms(), t0))
while True:
    try:
        r = s.recv(1280)
    except OSError:
        r = None
    if r:
        print("REPLY", binascii.hexlify(r).decode())
        break
    if time.ticks_diff(time.ticks_ms(), t0) > 10000:
        sys.exit("no reply")
    time.sleep_ms(1)
s.close()
"""


def micropython_post(tmp: Path, port: int, device: Identity, ca_der: Path,
                     message: Message) -> str:
    """Run the MicroPython client once (64 KB heap, like a small board); return its output."""
    script = tmp / "mp_post.py"
    script.write_text(_CLIENT)
    assert MICROPYTHON is not None
    proc = subprocess.run(
        [MICROPYTHON, "-X", "heapsize=64K", str(script), "127.0.0.1", str(port),
         str(device.cert_der), str(device.key_der), str(ca_der), message.encode().hex()],
        capture_output=True, text=True, timeout=30, check=False)
    return proc.stdout + proc.stderr


def reply_in(output: str) -> Message | None:
    for line in output.splitlines():
        if line.startswith("REPLY "):
            return Message.decode(bytes.fromhex(line.split()[1]))
    return None


def test_micropython_node_report_is_accepted(tmp_path: Path) -> None:
    site, sink = make_site(tmp_path), RecordingSink()
    with ServerThread(site.config(), sink) as server:
        output = micropython_post(tmp_path, server.port, site.device, site.device.ca_der,
                                  report_post(sample_report(temp=19.0)))
    reply = reply_in(output)
    assert reply is not None and reply.code == CHANGED, output
    assert [(i.device, i.report.values) for i in sink.items] == [("node-01", {"temp": 19.0})]


def test_micropython_node_with_foreign_certificate_is_refused(tmp_path: Path) -> None:
    site, sink = make_site(tmp_path), RecordingSink()
    with ServerThread(site.config(), sink) as server:
        # it trusts our gateway, but its own certificate comes from another CA
        output = micropython_post(tmp_path, server.port, site.stranger, site.device.ca_der,
                                  report_post(sample_report()))
        wait_until(lambda: server.server.stats["cert_rejected"] == 1, "the refusal count")
    assert reply_in(output) is None
    assert sink.items == []
