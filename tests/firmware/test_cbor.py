"""The firmware's CBOR codec, run in real MicroPython, against cbor2 and wire.report."""

from __future__ import annotations

import math
import random
import struct
from pathlib import Path

import cbor2
import pytest

from tandem.wire.errors import WireError
from tandem.wire.report import MAX_T_MS, Report, decode_report, encode_report
from tests.nodeproc import run_script

SCRIPT = Path(__file__).with_name("mp_codec.py")
pytestmark = pytest.mark.timeout(120)


def _run(lines: list[str]) -> list[str]:
    result = run_script(SCRIPT, "\n".join(lines) + "\n")
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    out = result.stdout.splitlines()
    assert len(out) == len(lines), result.stdout
    return out


def _value_token(v: float | int) -> str:
    if isinstance(v, float):
        return "f:" + struct.pack(">d", v).hex()
    return f"i:{v}"


SPECIAL_FLOATS = [0.0, -0.0, 1.0, 1.5, -2.5, 0.1, 21.37, 65504.0, 65520.0, 100000.0,
                  2.0 ** -24, 2.0 ** -20, 3 * 2.0 ** -20, 2.0 ** -14, 2.0 ** -25, 2.0 ** -149,
                  1e-40, 1e300, 3.4028234663852886e38, 1.0000001, 5.960464477539063e-08]
NAMES = ["temp", "vib", "a", "zz", "b", "rms_x", "pressure_hpa_01", "x" * 16, "é", "ü1"]


def _corpus() -> list[Report]:
    rng = random.Random(20240601)
    reports = [Report(1, 0, 0, {"temp": 21.5, "vib": 0.05}),
               Report(0xFFFFFFFF, 0xFFFFFFFF, 2**64 - 1, {"t": 1.0}),
               Report(23, 24, 255, {n: v for n, v in zip(NAMES, SPECIAL_FLOATS, strict=False)})]
    for _ in range(200):
        names = rng.sample(NAMES, rng.randint(1, len(NAMES)))
        values: dict[str, float] = {}
        for name in names:
            kind = rng.random()
            if kind < 0.3:
                values[name] = rng.choice(SPECIAL_FLOATS)
            elif kind < 0.5:
                values[name] = rng.randint(-2**40, 2**40)
            elif kind < 0.7:
                values[name] = struct.unpack(">f", struct.pack(">f", rng.uniform(-1e6, 1e6)))[0]
            else:
                values[name] = round(rng.uniform(-50, 150), rng.randint(0, 4))
        reports.append(Report(rng.randint(1, 2**32 - 1), rng.getrandbits(32),
                              rng.choice([0, rng.getrandbits(41), rng.getrandbits(64)]), values))
    return reports


def test_report_encoding_is_byte_identical_to_reference() -> None:
    corpus = _corpus()
    lines = [f"R {r.seq} {r.boot} {r.t_ms} "
             + " ".join(f"{k}={_value_token(v)}" for k, v in r.values.items())
             for r in corpus]
    for report, got in zip(corpus, _run(lines), strict=True):
        assert got == encode_report(report).hex(), report
        try:
            decoded = decode_report(bytes.fromhex(got))
        except WireError:
            # encoded alike, but the gateway refuses it (time past the year 9999, a value
            # no stage can sum): the range checks are tested in tests/wire/test_report.py
            assert report.t_ms > MAX_T_MS or not all(
                math.isfinite(v) and abs(v) <= 1e15 for v in report.values.values()), report
            continue
        assert decoded.seq == report.seq and decoded.values == {
            k: float(v) for k, v in report.values.items()}


def test_decoder_reads_what_cbor2_writes() -> None:
    objects = [0, 23, 24, 255, 256, 65535, 65536, 2**32 - 1, 2**32, 2**64 - 1, -1, -24, -25,
               -2**63, 1.5, 0.1, -0.0, float("inf"), float("-inf"), 1e300, "", "é€😀", b"",
               b"\x00\xff", [], [1, [2, [3]]], {}, {1: 2, "a": [True, False, None]},
               {"temp": 21.5, "vib": 0.05}, {4: {"x": 1}, 1: 2}]
    lines = []
    expected = []
    for obj in objects:
        for canonical in (True, False):
            lines.append("D " + cbor2.dumps(obj, canonical=canonical).hex())
            expected.append("OK " + cbor2.dumps(obj, canonical=True).hex())
    # Non-canonical but valid heads and float widths decode to the same value.
    for raw, obj in [("1817", 23), ("190001", 1), ("fb3ff8000000000000", 1.5),
                     ("fa3fc00000", 1.5), ("a2616202616101", {"a": 1, "b": 2})]:
        lines.append("D " + raw)
        expected.append("OK " + cbor2.dumps(obj, canonical=True).hex())
    assert _run(lines) == expected


MALFORMED = ["", "18", "19ff", "1a000000", "1b00000000000000", "1c", "1d", "1e", "1f",
             "5f", "7f", "9f", "bf", "ff", "f8", "f820", "e0", "c0", "c101", "62", "6261",
             "62ffff", "4a00", "81", "a1", "a101", "9bffffffffffffffff", "bbffffffffffffffff",
             "7bffffffffffffffff", "0000", "a1818000", "81" * 20 + "00",
             "f9", "fa0000", "fb00000000"]


def test_malformed_cbor_is_rejected_without_crash() -> None:
    out = _run(["D " + raw for raw in MALFORMED])
    for raw, line in zip(MALFORMED, out, strict=True):
        assert line.startswith("ERR "), (raw, line)
