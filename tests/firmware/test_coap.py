"""The firmware's CoAP codec, run in real MicroPython, against aiocoap's."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
from aiocoap import ACK, CHANGED, CON, CONTENT, NON, POST, RST, Message, numbers
from aiocoap.numbers.codes import Code

from tests.firmware.dtls_peer import coap_message
from tests.nodeproc import run_script

SCRIPT = Path(__file__).with_name("mp_codec.py")  # the codecs' MicroPython driver
pytestmark = pytest.mark.timeout(120)


def _run(lines: list[str]) -> list[str]:
    result = run_script(SCRIPT, "\n".join(lines) + "\n")
    assert result.returncode == 0 and "Traceback" not in result.stderr, result.stderr
    out = result.stdout.splitlines()
    assert len(out) == len(lines), result.stdout
    return out


def test_node_request_is_what_aiocoap_reads() -> None:
    cases = [(0, "00000000", "a0"), (0xFFFF, "ffffffff", "a4" + "00" * 60),
             (4660, "0a0b0c0d", "f6")]
    out = _run([f"B {mid} {token} {payload}" for mid, token, payload in cases])
    for (mid, token, payload), raw in zip(cases, out, strict=True):
        msg = Message.decode(bytes.fromhex(raw))
        assert msg.mtype == CON and msg.code == POST and msg.mid == mid
        assert msg.token == bytes.fromhex(token)
        assert msg.opt.uri_path == ("r",)
        assert msg.opt.content_format == 60
        assert msg.payload == bytes.fromhex(payload)


def test_empty_ack_and_rst_are_what_aiocoap_reads() -> None:
    out = _run(["E 2 258", "E 3 65535"])
    ack, rst = (Message.decode(bytes.fromhex(raw)) for raw in out)
    assert (ack.mtype, ack.code, ack.mid, ack.token) == (ACK, numbers.codes.EMPTY, 258, b"")
    assert (rst.mtype, rst.code, rst.mid) == (RST, numbers.codes.EMPTY, 65535)


def _responses() -> list[Message]:
    rng = random.Random(7)
    msgs = [coap_message(ACK, CHANGED, 1, b"\x01\x02\x03\x04"),
            coap_message(ACK, Code.BAD_REQUEST, 2, b"tok4",
                         b"values (key 4) must be a non-empty map"),
            coap_message(CON, Code.SERVICE_UNAVAILABLE, 3, b"abcd"),
            coap_message(NON, CONTENT, 4, b"", b"x"),
            coap_message(ACK, numbers.codes.EMPTY, 5)]
    for i in range(40):
        m = coap_message(rng.choice([ACK, CON, NON]), CHANGED, rng.randrange(65536),
                         rng.randbytes(rng.randint(0, 8)), rng.randbytes(rng.randint(0, 40)))
        m.opt.content_format = 60
        m.opt.max_age = rng.randrange(2**32)
        m.opt.etag = rng.randbytes(rng.randint(1, 8))
        m.opt.location_path = ("x" * rng.randint(0, 300), "y")  # extended lengths
        if i % 2:
            m.opt.size1 = 1024  # option number 60: two-byte delta extension
        msgs.append(m)
    return msgs


def test_node_parses_what_aiocoap_writes() -> None:
    msgs = _responses()
    out = _run(["P " + m.encode().hex() for m in msgs])
    for msg, line in zip(msgs, out, strict=True):
        assert line == (f"OK {int(msg.mtype)} {int(msg.code)} {msg.mid} "
                        f"{msg.token.hex() or '-'} {msg.payload.hex() or '-'}"), msg


GARBAGE = ["", "40", "404400", "80440001", "4f440001", "48440001aabb", "40440001ff",
           "40440001d0", "40440001e000", "40440001f0", "404400011d", "4044000121",
           "40000001ff01", "41000001aa", "40440001d1ff"]


def test_garbage_is_rejected_without_crash() -> None:
    rng = random.Random(3)
    garbage = GARBAGE + [rng.randbytes(rng.randint(0, 64)).hex() for _ in range(300)]
    out = _run(["P " + g for g in garbage])
    for raw, line in zip(garbage, out, strict=True):
        assert line.startswith(("OK ", "ERR ")), (raw, line)
        if raw in GARBAGE:
            assert line.startswith("ERR "), (raw, line)
