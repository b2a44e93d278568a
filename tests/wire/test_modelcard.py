"""The model card: what trainer, registry, manifest and gateway agree a model version is."""

from __future__ import annotations

import pytest

from tandem.wire.errors import WireError
from tandem.wire.modelcard import InputSpec, ModelCard, from_plain, to_plain

CARD = ModelCard(
    version="m-0002", name="vibration-ae", kind="autoencoder", parent="m-0001",
    dataset_sha256="ab" * 32, code_version="0.1.0", sha256="cd" * 32, size=9000,
    input=InputSpec(("band0", "band1"), (0.0, 1.0), (1.0, 2.0)), threshold=3.5,
    metrics={"f1": 0.9}, created_by="op", created_ms=1,
)


def test_a_card_survives_the_round_trip() -> None:
    assert from_plain(to_plain(CARD)) == CARD


@pytest.mark.parametrize(("field", "value"), [
    ("sha256", "XYZ"), ("size", 0), ("kind", "forest"), ("version", "../etc"),
])
def test_malformed_cards_are_refused_with_the_reason(field: str, value: object) -> None:
    plain = to_plain(CARD)
    plain[field] = value
    with pytest.raises(WireError, match="model_card"):
        from_plain(plain)


def test_input_spec_needs_one_scale_per_feature() -> None:
    plain = to_plain(CARD)
    plain["input"]["scales"] = [1.0]
    with pytest.raises(WireError, match="one offset and one scale"):
        from_plain(plain)


def test_garbage_is_refused_not_crashed_on() -> None:
    for junk in (None, [], {"version": "x"}, {"input": 5}):
        with pytest.raises(WireError):
            from_plain(junk)
