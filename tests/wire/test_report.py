"""Specification of the node -> gateway reading report codec."""

import contextlib

import cbor2
import pytest
from hypothesis import given
from hypothesis import strategies as st

from tandem.wire.errors import WireError
from tandem.wire.report import (
    MAX_ABS_VALUE,
    MAX_REPORT_BYTES,
    MAX_T_MS,
    Report,
    check_time,
    decode_report,
    encode_report,
)

NOW_MS = 1_764_230_400_000
DAY_MS = 86_400_000
EXAMPLE_HEX = ("a4 01 07 02 1a de ad be ef 03 1b 00 00 01 9a c4 53 88 7b 04 a2 63 76 69 62 "
               "fb 3f be b8 51 eb 85 1e b8 64 74 65 6d 70 f9 4d e0")


def test_example_from_protocol_doc_is_byte_exact() -> None:
    report = Report(seq=7, boot=0xDEADBEEF, t_ms=1764230400123, values={"temp": 23.5, "vib": 0.12})
    assert encode_report(report).hex(" ") == EXAMPLE_HEX
    assert decode_report(bytes.fromhex(EXAMPLE_HEX)) == report


@pytest.mark.parametrize(("payload", "reason"), [
    (b"", "cbor"),
    (b"\xff\x00", "cbor"),
    (bytes.fromhex(EXAMPLE_HEX) + b"\x00", "cbor"),
    (cbor2.dumps([1, 2]), "schema"),
    (cbor2.dumps({1: 1, 2: 1, 3: 0}), "schema"),
    (cbor2.dumps({1: -1, 2: 1, 3: 0, 4: {"t": 1}}), "schema"),
    (cbor2.dumps({1: 1, 2: 1, 3: 0, 4: {"t": float("nan")}}), "schema"),
    (cbor2.dumps({1: 1, 2: 1, 3: 0, 4: {"t": "hot"}}), "schema"),
    (cbor2.dumps({1: 1, 2: 1, 3: 0, 4: {"": 1}}), "schema"),
    (cbor2.dumps({1: 1, 2: 1, 3: 0, 4: {"t": 1}, 9: 0}), "schema"),
    (b"\x81" * 5000, "too_large"),
])
def test_bad_reports_are_rejected_with_a_reason(payload: bytes, reason: str) -> None:
    with pytest.raises(WireError) as info:
        decode_report(payload)
    assert info.value.reason == reason


def test_report_at_size_limit_is_refused_beyond_it() -> None:
    assert len(b"\x00" * (MAX_REPORT_BYTES + 1)) > MAX_REPORT_BYTES
    with pytest.raises(WireError, match="too_large"):
        decode_report(b"\x00" * (MAX_REPORT_BYTES + 1))


@given(st.binary(max_size=300))
def test_arbitrary_bytes_never_raise_anything_but_wire_error(data: bytes) -> None:
    with contextlib.suppress(WireError):
        decode_report(data)


channel = st.text(alphabet=st.characters(min_codepoint=97, max_codepoint=122), min_size=1,
                  max_size=16)


@given(st.integers(0, 2**32 - 1), st.integers(0, 2**32 - 1), st.integers(0, MAX_T_MS),
       st.dictionaries(channel, st.floats(-MAX_ABS_VALUE, MAX_ABS_VALUE), min_size=1,
                       max_size=8))
def test_round_trip(seq: int, boot: int, t_ms: int, values: dict[str, float]) -> None:
    report = Report(seq, boot, t_ms, values)
    assert decode_report(encode_report(report)) == report


@pytest.mark.parametrize(("field", "value"), [
    (3, MAX_T_MS + 1), (3, 2**63), (3, 2**64 - 1), (1, 2**32),
    (4, {"t": MAX_ABS_VALUE * 10}), (4, {"t": -1e308}), (4, {"t": 2**70}),
])
def test_values_the_chain_cannot_store_or_sum_are_refused(field: int, value: object) -> None:
    report = {1: 1, 2: 1, 3: 0, 4: {"t": 1.0}}
    report[field] = value
    with pytest.raises(WireError, match="schema"):
        decode_report(cbor2.dumps(report))


@pytest.mark.parametrize(("t_ms", "refused"), [
    (0, False), (NOW_MS, False), (NOW_MS - 9 * 365 * DAY_MS, False), (NOW_MS + 6 * DAY_MS, False),
    (NOW_MS - 11 * 365 * DAY_MS, True), (NOW_MS + 8 * DAY_MS, True),
])
def test_a_timestamp_far_from_the_receivers_clock_is_refused(t_ms: int, refused: bool) -> None:
    report = Report(1, 1, t_ms, {"t": 1.0})
    if refused:
        with pytest.raises(WireError, match="time"):
            check_time(report, NOW_MS)
    else:
        check_time(report, NOW_MS)
