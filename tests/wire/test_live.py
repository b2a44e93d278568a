"""The live lane's messages: the docs/protocol.md example, round trips, refusals with the fault."""

from __future__ import annotations

import cbor2
import pytest

from tandem.wire.errors import WireError
from tandem.wire.live import (
    LiveValue,
    Watch,
    update_from_plain,
    update_to_plain,
    watches_from_plain,
    watches_to_plain,
)

EXAMPLE = bytes.fromhex(
    "a461741b0000019aefe2a7fb626777656777" "2d3031626f706b6c6976652d76616c756573"
    "64626f6479a16676616c756573a1626e31a16474656d70821b0000019aefe2a74ef94d60")


def test_the_documented_example_is_what_the_gateway_signs() -> None:
    update = {"n1": {"temp": LiveValue(21.5, 1764961199950)}}
    payload = cbor2.dumps({"op": "live-values", "gw": "gw-01", "t": 1764961200123,
                           "body": update_to_plain(update)}, canonical=True)
    assert payload == EXAMPLE and len(payload) == 72
    assert update_from_plain(cbor2.loads(payload)["body"], 10, 10) == update


def test_the_watched_set_round_trips() -> None:
    watches = [Watch("n1", 5), Watch("plc/u1", 7)]
    assert watches_from_plain(watches_to_plain(watches, 250)) == watches


@pytest.mark.parametrize(("body", "fault"), [
    ({"values": {"n1": {"t": [1, float("nan")]}}}, "n1/t"),
    ({"values": {"n1": {"t": [-1, 1.0]}}}, "n1/t"),
    ({"values": {"n1": {"t": [1, "hot"]}}}, "n1/t"),
    ({"values": {"n1": {}}}, "n1: 1..4 channels"),
    ({"values": {"n1": {f"c{i}": [1, 1.0] for i in range(5)}}}, "n1: 1..4 channels"),
    ({"values": {f"n{i}": {"t": [1, 1.0]} for i in range(3)}}, "3 devices"),
    ({"values": {"": {"t": [1, 1.0]}}}, "device names"),
    ({"values": {}, "more": 1}, "exactly"),
])
def test_a_bad_body_is_refused_naming_the_fault(body: dict[str, object], fault: str) -> None:
    with pytest.raises(WireError, match=fault) as refused:
        update_from_plain(body, 2, 4)
    assert refused.value.reason == "schema"
