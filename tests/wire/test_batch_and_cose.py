"""Specification of the uplink batch and its COSE_Sign1 envelope."""

import contextlib

import cbor2
import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from hypothesis import given, settings
from hypothesis import strategies as st

from tandem.wire import batch as batch_module
from tandem.wire.batch import Batch, Event, Summary, decode_batch, decode_record, encode_batch
from tandem.wire.cose import SoftwareSigner, sign1, verify1
from tandem.wire.errors import WireError

KEY = ec.generate_private_key(ec.SECP256R1())
OTHER = ec.generate_private_key(ec.SECP256R1())
SUMMARY = Summary("node-01", "temp", 1764230400000, 1764230410000, 10, 23.1, 23.9, 23.5, 23.4)
EVENT = Event("node-02", "bearing_fault", 1764230405000, 3, {"vib_rms": 2.5})


def test_batch_round_trip_and_example_bytes() -> None:
    batch = Batch("gw-01", 42, 1764230411000, (SUMMARY,))
    data = encode_batch(batch)
    assert len(data) == 139  # the example in docs/protocol.md
    assert data[:4].hex() == "a5617601"
    assert decode_batch(data) == batch
    with_event = Batch("gw-01", 43, 1764230411000, (SUMMARY, EVENT))
    assert decode_batch(encode_batch(with_event)) == with_event


def test_an_epoch_adds_one_key_and_a_batch_without_one_is_epoch_zero() -> None:
    batch = Batch("gw-01", 42, 1764230411000, (SUMMARY,), epoch=3054198966)
    data = encode_batch(batch)
    assert len(data) == 147  # the epoch example in docs/protocol.md
    assert data[:12].hex() == "a66176016265701ab60b60b6"  # map(6) "v": 1 "ep": 3054198966
    assert decode_batch(data) == batch
    assert decode_batch(encode_batch(Batch("gw-01", 42, 1764230411000, (SUMMARY,)))).epoch == 0


def test_signed_batch_verifies_with_the_registered_key_only() -> None:
    envelope = sign1(encode_batch(Batch("gw-01", 1, 0, (SUMMARY,))), "gw-01", SoftwareSigner(KEY))
    verified = verify1(envelope, lambda kid: KEY.public_key() if kid == "gw-01" else None)
    assert verified.kid == "gw-01"
    assert decode_batch(verified.payload).records == (SUMMARY,)
    with pytest.raises(WireError) as info:
        verify1(envelope, lambda kid: OTHER.public_key())
    assert info.value.reason == "signature"
    with pytest.raises(WireError) as info:
        verify1(envelope, lambda kid: None)
    assert info.value.reason == "unknown_key"


def test_a_flipped_payload_byte_breaks_the_signature() -> None:
    envelope = bytearray(sign1(b"payload-bytes", "gw-01", SoftwareSigner(KEY)))
    index = bytes(envelope).index(b"payload-bytes")
    envelope[index] ^= 0x01
    with pytest.raises(WireError) as info:
        verify1(bytes(envelope), lambda kid: KEY.public_key())
    assert info.value.reason == "signature"


@pytest.mark.parametrize(("envelope", "reason"), [
    (b"\x00garbage", "cbor"),
    (cbor2.dumps([1, 2, 3, 4]), "cose"),
    (cbor2.dumps(cbor2.CBORTag(18, [b"", {}, b"", b""])), "cose"),
    (cbor2.dumps(cbor2.CBORTag(18, [cbor2.dumps({1: -35, 4: b"gw"}), {}, b"x", b"s" * 64])),
     "cose"),
    (cbor2.dumps(cbor2.CBORTag(18, [cbor2.dumps({1: -7}), {}, b"x", b"s" * 64])), "cose"),
])
def test_malformed_envelopes(envelope: bytes, reason: str) -> None:
    with pytest.raises(WireError) as info:
        verify1(envelope, lambda kid: KEY.public_key())
    assert info.value.reason == reason


@pytest.mark.parametrize("mutate", [
    lambda b: b.update(v=4),  # 1, 2 (sealed records) and 3 (raw snippets) are defined
    lambda b: b.update(seq=0),
    lambda b: b.update(ep=0),  # present means drawn: 1 or more
    lambda b: b.update(ep="7"),
    lambda b: b.update(gw=""),
    lambda b: b.update(recs="nope"),
    lambda b: b["recs"][0].update(k="x"),
    lambda b: b["recs"][0].update(n=0),
    lambda b: b["recs"][0].update(mean=99.0),
    lambda b: b["recs"][0].update(t1=0),
    lambda b: b["recs"][0].update(min=float("inf")),
])
def test_schema_violations_are_named(mutate: object) -> None:
    raw = cbor2.loads(encode_batch(Batch("gw-01", 1, 0, (SUMMARY,))))
    raw["recs"] = [dict(r) for r in raw["recs"]]
    mutate(raw)  # type: ignore[operator]
    with pytest.raises(WireError) as info:
        decode_batch(cbor2.dumps(raw))
    assert info.value.reason == "schema"


@settings(max_examples=300)
@given(st.binary(max_size=400))
def test_arbitrary_bytes_only_raise_wire_error(data: bytes) -> None:
    for decode in (decode_batch, lambda d: verify1(d, lambda kid: KEY.public_key())):
        with contextlib.suppress(WireError):
            decode(data)



_VALID = {"k": "s", "dev": "dev-1", "ch": "temp", "t0": 60_000, "t1": 120_000, "n": 60,
          "min": 1.0, "max": 3.0, "mean": 2.0, "last": 2.5}
_ODD = st.one_of(st.sampled_from([None, True, False, 0, 1, -1, 2, 2**63 - 1, 2**63, 2**64,
                                  0.0, 2.0, -0.0, float("inf"), float("-inf"), float("nan"),
                                  "", "x" * 64, "x" * 65, "tab\there", b"dev"]),
                 st.integers(), st.floats(), st.text(max_size=70))


@settings(max_examples=1000)
@given(changes=st.dictionaries(st.sampled_from(sorted(set(_VALID) - {"k"})), _ODD, max_size=3))
def test_the_quick_summary_check_takes_and_refuses_what_the_field_checks_do(
        changes: dict[str, object]) -> None:
    record = _VALID | changes
    outcomes: list[object] = []
    for decode in (decode_record, batch_module._checked_summary):
        try:
            outcomes.append(decode(record))
        except WireError as exc:
            outcomes.append(exc.reason)
    assert outcomes[0] == outcomes[1], record
