"""Model deltas: a patch from the version a gateway holds rebuilds the new version exactly."""

from __future__ import annotations

import random

import pytest

from tandem.wire.errors import WireError
from tandem.wire.modeldelta import apply_delta, compress_full, make_delta, worth_sending


def model_like(seed: int, size: int = 20_000) -> bytes:
    return random.Random(seed).randbytes(size)


def test_a_delta_rebuilds_the_new_version_and_is_small_when_few_bytes_changed() -> None:
    old = model_like(1)
    new = bytearray(old)
    new[5000:5400] = model_like(2, 400)  # a retrained head: one region rewritten
    delta = make_delta(old, bytes(new))
    assert apply_delta(old, delta) == bytes(new)
    assert worth_sending(delta, compress_full(bytes(new)))
    assert len(delta) < len(new) // 10


def test_a_full_rewrite_is_not_worth_a_delta() -> None:
    old, new = model_like(1), model_like(3)
    assert not worth_sending(make_delta(old, new), compress_full(new))


def test_a_broken_delta_is_refused_with_a_wire_error() -> None:
    old = model_like(1)
    delta = make_delta(old, model_like(4))
    for broken in (delta[: len(delta) // 2], b"BSDIFF40" + b"\0" * 30, b"nonsense"):
        with pytest.raises(WireError) as refused:
            apply_delta(old, broken)
        assert refused.value.reason == "model_delta"
