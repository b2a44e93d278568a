"""A cloud app configured for enrolment and policies, and gateway configs that enrol with it.

Gateway-side tests reach the app in-process through httpx's WSGI transport,
so the gateway code runs its real HTTP client without a socket.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from flask import Flask
from flask.testing import FlaskClient

from tandem.cloud import close_app, create_app
from tandem.cloud.db import engine as database
from tandem.cloud.fleet import tokens as enrol_store
from tandem.cloud.keys.keyfiles import load_private_key, write_new_key
from tandem.gateway.config import GatewayConfig, parse_config
from tandem.tools.pki import SiteCA
from tandem.wire.batch import Batch, Summary, encode_batch
from tandem.wire.cose import MEDIA_TYPE, Signer, sign1

PASSPHRASE_ENV = "TANDEM_TEST_KEY_PASSPHRASE"
PASSPHRASE = "correct horse battery staple"


def cloud_mapping(tmp_path: Path, ca: SiteCA) -> dict[str, Any]:
    """A development cloud config whose CA is ca and with fresh policy and data keys."""
    keys = tmp_path / "cloud-keys"
    for name in ("policy.pem", "data.pem"):
        if not (keys / name).exists():
            write_new_key(keys / name)
    return {"version": 1, "mode": "development", "data_dir": str(tmp_path / "cloud-data"),
            "server": {"trust_ca": str(ca.cert_pem_path)},
            "enrol": {"ca_cert": str(ca.cert_pem_path),
                      "ca_key": str(ca.directory / "ca.key.pem")},
            "policy": {"signing_key": str(keys / "policy.pem"),
                       "data_key": str(keys / "data.pem")}}


def make_app(tmp_path: Path, ca: SiteCA) -> Flask:
    """The app of cloud_mapping."""
    return create_app(cloud_mapping(tmp_path, ca))


def policy_key(tmp_path: Path) -> ec.EllipticCurvePrivateKey:
    """The cloud's policy signing key of cloud_mapping."""
    return load_private_key(tmp_path / "cloud-keys" / "policy.pem")


def data_key(tmp_path: Path) -> ec.EllipticCurvePrivateKey:
    """The cloud's data key of cloud_mapping."""
    return load_private_key(tmp_path / "cloud-keys" / "data.pem")


def new_token(app: Flask, gateway: str, group: str = "default", ttl_s: int = 3600,
              now_ms: int | None = None) -> str:
    """A one-time installer token for gateway."""
    with database.sessions(app).begin() as session:
        return enrol_store.create_token(session, gateway, group, ttl_s,
                                        now_ms or time.time_ns() // 1_000_000)


def wsgi_client(app: Flask) -> httpx.Client:
    """An httpx client calling app in-process."""
    return httpx.Client(transport=httpx.WSGITransport(app=app), base_url="http://cloud")


def gateway_config(root: Path, ca: SiteCA, gateway: str = "gw-01", keystore: str = "file",
                   tcti: str = "", **sections: dict[str, Any]) -> GatewayConfig:
    """A gateway config under root whose key store is file (passphrase) or tpm."""
    identity: dict[str, Any] = {"cert": str(root / "dtls-cert.pem"),
                                "key": str(root / "identity.key.pem"),
                                "ca": str(ca.cert_pem_path), "keystore": keystore,
                                "passphrase_env": PASSPHRASE_ENV}
    if tcti:
        identity["tcti"] = tcti
    return parse_config({"version": 1, "gateway": {"id": gateway, "data_dir": str(root / "data")},
                         "identity": identity, **sections})


def upload_summary(client: FlaskClient, gateway: str, seq: int, signer: Signer) -> tuple[int, str]:
    """POST one signed batch of one summary as `gateway`: (status, error text)."""
    now = time.time_ns() // 1_000_000
    batch = Batch(gateway, seq, now, (Summary("node-01", "temp", now - 60_000, now, 3, 1.0, 3.0,
                                              2.0, 2.5),))
    response = client.post("/ingest/v1/batches", data=sign1(encode_batch(batch), gateway, signer),
                           headers={"Content-Type": MEDIA_TYPE})
    return response.status_code, response.get_json().get("error", "")


# Fixtures (a site CA, and a cloud app on it): bind them in a test module as `ca = enrolkit.ca`.
@pytest.fixture
def ca(tmp_path: Path) -> SiteCA:
    return SiteCA.create(tmp_path / "pki", "site-a")


@pytest.fixture
def app(tmp_path: Path, ca: SiteCA, monkeypatch: pytest.MonkeyPatch) -> Iterator[Flask]:
    monkeypatch.setenv(PASSPHRASE_ENV, PASSPHRASE)
    application = make_app(tmp_path, ca)
    yield application
    close_app(application)
