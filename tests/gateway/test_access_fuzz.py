"""Fuzz of the device-access ingress: random and mutated CoAP with random CBOR, live server.

Through the real server (plain-CoAP dev mode for speed, then a smaller set
over DTLS): after every input the server must still answer a good report
with 2.04, a POST /r must get exactly the answer and counter its payload
calls for (the oracle is wire.report.decode_report), nothing may be
answered 5.00 (an exception escaping a handler), and no error may reach
the server loop's exception handler or its `internal_error` counter.
"""

from __future__ import annotations

import itertools
import socket
import time
from collections.abc import Iterator
from typing import Any

import cbor2
import pytest
from aiocoap import CHANGED, CON, NON, POST, Code
from aiocoap.message import Message
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tandem.wire.errors import WireError
from tandem.wire.report import (
    CONTENT_FORMAT_CBOR,
    MAX_REPORT_BYTES,
    check_time,
    decode_report,
)
from tests.gateway.access_peers import (
    DtlsClient,
    RecordingSink,
    ServerThread,
    Site,
    make_site,
    sample_report,
)

pytestmark = pytest.mark.timeout(120)

_MIDS = itertools.count(1)
_SEQ = itertools.count(1)

cbor_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**64), 2**64 - 1) | st.floats()
    | st.text(max_size=20) | st.binary(max_size=20),
    lambda inner: st.lists(inner, max_size=6)
    | st.dictionaries(st.integers(-2, 6) | st.text(max_size=17), inner, max_size=6),
    max_leaves=24)
channel_values = st.dictionaries(st.text(min_size=0, max_size=18),
                                 st.floats() | st.integers(-(2**70), 2**70) | cbor_values,
                                 max_size=34)
report_like = st.fixed_dictionaries(
    {1: st.integers(-1, 2**33), 2: st.integers(-1, 2**33), 3: st.integers(-1, 2**65),
     4: channel_values},
    optional={5: cbor_values})


@st.composite
def payloads(draw: st.DrawFn) -> bytes:
    """Random CBOR, report-shaped CBOR, a mutated good report, or raw bytes."""
    kind = draw(st.sampled_from(["cbor", "report", "mutated", "bytes", "big"]))
    if kind == "cbor":
        return cbor2.dumps(draw(cbor_values))
    if kind == "report":
        return cbor2.dumps(draw(report_like))
    if kind == "bytes":
        return draw(st.binary(max_size=1100))
    if kind == "big":
        return cbor2.dumps({1: 1, 2: 1, 3: 0, 4: {"x": 1.0}, 5: b"\0" * draw(
            st.integers(MAX_REPORT_BYTES - 40, MAX_REPORT_BYTES + 40))})
    good = bytearray(sample_report(seq=3, temp=21.5, vib=0.12))
    for _ in range(draw(st.integers(1, 4))):
        at = draw(st.integers(0, len(good) - 1))
        choice = draw(st.sampled_from(["flip", "cut", "insert"]))
        if choice == "flip":
            good[at] ^= 1 << draw(st.integers(0, 7))
        elif choice == "cut":
            del good[at:]
            if not good:
                break
        else:
            good[at:at] = draw(st.binary(min_size=1, max_size=4))
    return bytes(good)


@st.composite
def requests(draw: st.DrawFn) -> tuple[bytes, dict[str, Any]]:
    """(datagram, expectation): a POST /r with a random payload, other CoAP, a good POST
    with mutated header/option bytes, or raw bytes."""
    kind = draw(st.sampled_from(["post", "post", "post", "coap", "mangled", "raw"]))
    if kind == "raw":
        return draw(st.binary(min_size=0, max_size=1300)), {}
    if kind == "mangled":
        message = Message(code=POST, uri_path=("r",), payload=sample_report())
        message.mtype = CON
        message.opt.content_format = CONTENT_FORMAT_CBOR
        raw = bytearray(_encoded(message, draw))
        for _ in range(draw(st.integers(1, 3))):
            at = draw(st.integers(4, min(len(raw) - 1, 24)))  # the token and options
            raw[at] = draw(st.integers(0, 255))
        return bytes(raw), {}
    payload = draw(payloads())
    if kind == "post":
        fmt = draw(st.sampled_from([CONTENT_FORMAT_CBOR, CONTENT_FORMAT_CBOR, None, 0, 50]))
        message = Message(code=POST, uri_path=("r",), payload=payload)
        if fmt is not None:
            message.opt.content_format = fmt
        message.mtype = CON
        return _encoded(message, draw), {"payload": payload, "format": fmt}
    message = Message(code=draw(st.sampled_from([Code.GET, Code.PUT, Code.DELETE, Code.POST,
                                                 Code.FETCH, Code.CONTENT])),
                      uri_path=tuple(draw(st.lists(st.text(max_size=8), max_size=3))),
                      payload=payload)
    message.mtype = draw(st.sampled_from([CON, NON]))
    return _encoded(message, draw), {}


def _encoded(message: Message, draw: st.DrawFn) -> bytes:
    message.mid = next(_MIDS) % 65536  # unique: CoAP de-duplication must not mask answers
    message.token = draw(st.binary(max_size=8))
    return bytes(message.encode())


def expected(expectation: dict[str, Any]) -> tuple[Code, str | None]:
    """The code and counter a POST /r must produce (the oracle: decode_report)."""
    payload, fmt = expectation["payload"], expectation["format"]
    if fmt != CONTENT_FORMAT_CBOR:
        return Code.UNSUPPORTED_CONTENT_FORMAT, "bad_content_format"
    if len(payload) > MAX_REPORT_BYTES:
        return Code.REQUEST_ENTITY_TOO_LARGE, "report_too_large"
    try:
        check_time(decode_report(payload), time.time_ns() // 1_000_000)
    except WireError as exc:
        return Code.BAD_REQUEST, f"bad_report_{exc.reason}"
    return Code.CHANGED, None


class Harness:
    """Sends datagrams to a running server and checks each outcome."""

    def __init__(self, server: ServerThread, send: Any, recv: Any) -> None:
        self.server = server
        self.send = send
        self.recv = recv
        self.loop_errors: list[dict[str, Any]] = []
        server.call(lambda: _capture_loop_errors(self.loop_errors))

    def check(self, datagram: bytes, expectation: dict[str, Any]) -> None:
        before = self.server.call(self.server.server.stats.snapshot)
        self.send(datagram)
        if expectation:
            code, cause = expected(expectation)
            reply = self._reply_to(datagram)
            assert reply.code == code, (reply.code, reply.payload, expectation)
            after = self.server.call(self.server.server.stats.snapshot)
            if cause is not None:
                assert after.get(cause, 0) == before.get(cause, 0) + 1, (cause, after)
        self.probe()
        after = self.server.call(self.server.server.stats.snapshot)
        assert all(after.get(k, 0) >= v for k, v in before.items())
        assert after.get("internal_error", 0) == 0
        assert self.loop_errors == []

    def probe(self) -> None:
        """A good report still gets 2.04."""
        message = Message(code=POST, uri_path=("r",), payload=sample_report(seq=next(_SEQ)))
        message.mtype, message.mid, message.token = CON, next(_MIDS) % 65536, b"pr"
        message.opt.content_format = CONTENT_FORMAT_CBOR
        datagram = bytes(message.encode())
        self.send(datagram)
        assert self._reply_to(datagram).code == CHANGED

    def _reply_to(self, datagram: bytes) -> Message:
        mid = datagram[2] << 8 | datagram[3]
        while True:
            data = self.recv()
            assert data is not None, "no reply: the server stopped answering"
            reply = Message.decode(data)
            assert reply.code != Code.INTERNAL_SERVER_ERROR, reply.payload
            if reply.mid == mid and reply.code != Code.EMPTY:
                return reply


def _capture_loop_errors(into: list[dict[str, Any]]) -> None:
    import asyncio

    asyncio.get_running_loop().set_exception_handler(lambda loop, ctx: into.append(ctx))


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Site:
    return make_site(tmp_path_factory.mktemp("fuzz"))


@pytest.fixture(scope="module")
def plain(site: Site) -> Iterator[Harness]:
    config = site.config(insecure_plain_coap=True, cert_pem=None, key_pem=None, ca_pem=None)
    with ServerThread(config, RecordingSink()) as server, \
            socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.connect(("127.0.0.1", server.port))
        sock.settimeout(5)

        def recv() -> bytes | None:
            try:
                return sock.recv(4096)
            except TimeoutError:
                return None

        yield Harness(server, sock.send, recv)
        assert server.call(lambda: server.server.stats["internal_error"]) == 0


@pytest.fixture(scope="module")
def dtls(site: Site) -> Iterator[Harness]:
    with ServerThread(site.config(), RecordingSink()) as server, \
            DtlsClient(server.port, site.device, site.ca.cert_pem_path) as client:
        client.handshake()
        yield Harness(server, client.send, client.recv)


def fuzz_settings(examples: int) -> settings:
    """Deterministic (derandomized, no example database), no deadline: the server is live."""
    return settings(max_examples=examples, derandomize=True, deadline=None, database=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def test_plain_coap_ingress_survives_random_input(plain: Harness) -> None:
    @fuzz_settings(400)
    @given(request=requests())
    def fuzz(request: tuple[bytes, dict[str, Any]]) -> None:
        plain.check(*request)

    fuzz()
    causes = plain.server.call(plain.server.server.stats.snapshot)
    for cause in ("bad_content_format", "report_too_large", "bad_report_cbor",
                  "bad_report_schema", "decode_error"):
        assert causes.get(cause, 0) > 0, f"the fuzz never produced {cause}: {causes}"


def test_a_string_option_that_is_not_utf8_is_a_decode_error(plain: Harness) -> None:
    # found by tools/fuzz/ingress.py: aiocoap raised UnicodeDecodeError, counted as internal_error
    before = plain.server.call(plain.server.server.stats.snapshot).get("decode_error", 0)
    plain.check(bytes.fromhex(f"4102{next(_MIDS) % 65536:04x}01b2e2a2"), {})
    assert plain.server.call(plain.server.server.stats.snapshot)["decode_error"] == before + 1


def test_dtls_ingress_survives_random_input(dtls: Harness) -> None:
    @fuzz_settings(80)
    @given(request=requests())
    def fuzz(request: tuple[bytes, dict[str, Any]]) -> None:
        dtls.check(*request)

    fuzz()
