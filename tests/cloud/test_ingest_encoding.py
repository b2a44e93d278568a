"""Specification: a gateway may gzip a batch on the HTTP layer; bombs and junk are refused."""

from __future__ import annotations

import gzip
from types import SimpleNamespace
from typing import Any

from flask import Flask
from flask.testing import FlaskClient

from tandem.wire.cose import MEDIA_TYPE


def _post(client: FlaskClient, body: bytes, encoding: str) -> tuple[int, str]:
    response = client.post("/ingest/v1/batches", data=body,
                           headers={"Content-Type": MEDIA_TYPE, "Content-Encoding": encoding})
    payload: dict[str, Any] = response.get_json()
    return response.status_code, str(payload.get("error", payload.get("status")))


def test_a_gzipped_batch_is_stored(client: FlaskClient, pki: Any, kit: SimpleNamespace) -> None:
    body = gzip.compress(kit.envelope(pki.gateway, 1))
    assert _post(client, body, "gzip") == (200, "stored")


def test_a_gzip_bomb_is_too_large_and_stores_nothing(app: Flask, client: FlaskClient,
                                                     kit: SimpleNamespace) -> None:
    before = kit.snapshot(app)
    assert _post(client, gzip.compress(b"\x00" * (8 << 20)), "gzip") == (413, "too_large")
    assert kit.snapshot(app) == before


def test_broken_or_truncated_gzip_is_malformed(client: FlaskClient, pki: Any,
                                               kit: SimpleNamespace) -> None:
    assert _post(client, b"\x1f\x8bnot really gzip", "gzip")[1] == "malformed"
    truncated = gzip.compress(kit.envelope(pki.gateway, 2))[:-9]
    assert _post(client, truncated, "gzip")[1] == "malformed"


def test_an_unknown_encoding_is_refused(client: FlaskClient, pki: Any,
                                        kit: SimpleNamespace) -> None:
    assert _post(client, kit.envelope(pki.gateway, 3), "br") == (415, "unsupported_media_type")


def test_junk_after_the_gzip_stream_is_malformed_and_stores_nothing(
        app: Flask, client: FlaskClient, pki: Any, kit: SimpleNamespace) -> None:
    before = kit.snapshot(app)
    body = gzip.compress(kit.envelope(pki.gateway, 3))
    assert _post(client, body + b"trailing junk", "gzip") == (400, "malformed")
    assert _post(client, body + gzip.compress(b"second member"), "gzip") == (400, "malformed")
    assert kit.snapshot(app) == before
