"""Whatever arrives at the ingest endpoint, the answer is never a server error."""

from __future__ import annotations

from collections.abc import Iterator

import cbor2
import pytest
from flask import Flask
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tandem.cloud import close_app, create_app
from tandem.wire.cose import sign1

FUZZ = settings(max_examples=150, deadline=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture])

cbor_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats() | st.text(max_size=20)
    | st.binary(max_size=20),
    lambda inner: st.lists(inner, max_size=5)
    | st.dictionaries(st.text(max_size=8) | st.integers(-5, 5), inner, max_size=5)
    | st.builds(cbor2.CBORTag, st.sampled_from([18, 1, 2, 55799]), inner),
    max_leaves=25,
)

record_like = st.fixed_dictionaries(
    {"k": st.sampled_from(["s", "e", "x"]), "dev": st.text(max_size=3) | st.integers(),
     "ch": st.just("t"), "name": st.just("n"),
     "t0": st.integers(-2, 2**64), "t1": st.integers(-2, 2**64), "t": st.integers(-2, 2**64),
     "n": st.integers(-1, 3), "sev": st.integers(-1, 3),
     "min": st.floats() | st.integers(), "max": st.floats(), "mean": st.floats(),
     "last": st.floats(), "vals": st.dictionaries(st.text(max_size=3), st.floats(), max_size=3)})


@pytest.fixture(scope="module")
def fuzz_app(tmp_path_factory: pytest.TempPathFactory, pki, kit) -> Iterator[Flask]:
    app = create_app(kit.app_config(tmp_path_factory.mktemp("fuzz"), pki))
    kit.register(app, pki.gateway, pki.ca.cert_pem_path)
    yield app
    close_app(app)


def assert_not_5xx(app: Flask, body: bytes) -> None:
    response = app.test_client().post("/ingest/v1/batches", data=body,
                                      headers={"Content-Type": "application/cose"})
    assert response.status_code < 500, response.text
    assert response.is_json


@FUZZ
@given(st.binary(max_size=2048))
def test_random_bytes_never_5xx(fuzz_app, body):
    assert_not_5xx(fuzz_app, body)


@FUZZ
@given(cbor_values)
def test_random_cbor_never_5xx(fuzz_app, value):
    assert_not_5xx(fuzz_app, cbor2.dumps(value))


@FUZZ
@given(st.one_of(cbor_values, st.fixed_dictionaries(
    {"v": st.sampled_from([1, 2]), "gw": st.sampled_from(["gw-01", "gw-02", ""]),
     "seq": st.integers(-1, 2**64), "sent": st.integers(-1, 2**64) | st.floats(),
     "recs": st.lists(record_like, max_size=4)})))
def test_signed_random_payload_never_5xx(fuzz_app, pki, kit, payload):
    """Signed by a registered gateway, so the payload gets past the signature into decoding."""
    assert_not_5xx(fuzz_app, sign1(cbor2.dumps(payload), "gw-01", kit.signer_of(pki.gateway)))
