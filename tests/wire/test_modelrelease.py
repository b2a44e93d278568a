"""The signed model release manifest: genuine ones open, others are refused with the reason."""

from __future__ import annotations

import hashlib

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from tandem.wire.cose import SoftwareSigner
from tandem.wire.errors import WireError
from tandem.wire.modelcard import InputSpec, ModelCard
from tandem.wire.modelrelease import Artefact, ModelRelease, open_manifest, sign_manifest

CARD = ModelCard("m-0002", "vibration-ae", "autoencoder", "m-0001", "0" * 64, "test",
                 "a" * 64, 3000, InputSpec(("b0", "b1"), (0.0, 0.0), (1.0, 1.0)), 2.0,
                 {"f1": 0.9})


def _artefact(kind: str, parent: str | None, size: int) -> Artefact:
    chunks = tuple(hashlib.sha256(bytes([i])).hexdigest() for i in range(-(-size // 1024)))
    return Artefact(kind, parent, "xz" if kind == "full" else "bsdiff4", "b" * 64, size,
                    "/models/v1/artefact/" + "b" * 64, 1024, chunks)


RELEASE = ModelRelease(2, 1_700_000_000_000, CARD,
                       (_artefact("full", None, 2500), _artefact("delta", "m-0001", 300)))


def test_a_manifest_round_trips_and_the_gateway_picks_the_smallest_artefact_it_can_use() -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    opened = open_manifest(sign_manifest(RELEASE, SoftwareSigner(key), key.public_key()),
                           key.public_key())
    assert opened == RELEASE
    best = opened.best_for({"m-0001"})
    assert best is not None and best.kind == "delta"
    other = opened.best_for({"m-0000"})  # a delta for a parent not held is never chosen
    assert other is not None and other.kind == "full"


def test_a_manifest_signed_by_another_key_or_altered_is_refused() -> None:
    key, other = (ec.generate_private_key(ec.SECP256R1()) for _ in range(2))
    envelope = sign_manifest(RELEASE, SoftwareSigner(other), other.public_key())
    with pytest.raises(WireError) as caught:
        open_manifest(envelope, key.public_key())
    assert caught.value.reason == "unknown_key"
    genuine = bytearray(sign_manifest(RELEASE, SoftwareSigner(key), key.public_key()))
    genuine[-80] ^= 1
    with pytest.raises(WireError):
        open_manifest(bytes(genuine), key.public_key())


def test_an_artefact_without_one_hash_per_chunk_is_refused() -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    short = Artefact("full", None, "xz", "b" * 64, 5000, "/x", 1024, ("c" * 64,))
    envelope = sign_manifest(ModelRelease(1, 0, CARD, (short,)), SoftwareSigner(key),
                             key.public_key())
    with pytest.raises(WireError, match="one sha256 per chunk"):
        open_manifest(envelope, key.public_key())
