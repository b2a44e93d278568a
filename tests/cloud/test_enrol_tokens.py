"""Installer tokens at the cloud: single use, only for enrolment, and every enrolment audited."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import pytest
from flask import Flask

from tandem.cloud import close_app
from tandem.cloud.audit import chain as auditlog
from tandem.cloud.db import engine as database
from tandem.cloud.fleet import registry
from tandem.cloud.fleet import tokens as enrol_store
from tandem.gateway.identity.csr import build_csr
from tandem.gateway.identity.keystore import SoftwareKeyStore
from tandem.tools.pki import SiteCA
from tests.enrolkit import make_app, new_token


@pytest.fixture
def app(tmp_path: Path) -> Iterator[Flask]:
    application = make_app(tmp_path, SiteCA.create(tmp_path / "pki", "site-a"))
    yield application
    close_app(application)


def _csr(tmp_path: Path, name: str = "gw-01") -> str:
    store = SoftwareKeyStore.generate(tmp_path / f"{name}.pem", b"pass")
    return build_csr(store, name).decode()


def test_enrolment_needs_a_valid_installer_token(tmp_path: Path, app: Flask) -> None:
    client = app.test_client()
    body = {"csr": _csr(tmp_path)}
    assert client.post("/enrol/v1/csr", json=body).status_code == 401
    bad = {"Authorization": "Bearer tdi_not-a-token"}
    assert client.post("/enrol/v1/csr", json=body, headers=bad).json["error"] == "invalid_token"
    good = {"Authorization": f"Bearer {new_token(app, 'gw-01')}"}
    assert client.post("/enrol/v1/csr", json={"csr": "junk"}, headers=good).status_code == 422
    response = client.post("/enrol/v1/csr", json=body, headers=good)
    assert response.status_code == 200 and response.json["gateway"] == "gw-01"
    assert client.post("/enrol/v1/csr", json=body, headers=good).status_code == 401


def test_an_installer_token_opens_nothing_else(tmp_path: Path, app: Flask) -> None:
    headers = {"Authorization": f"Bearer {new_token(app, 'gw-01')}"}
    response = app.test_client().get("/api/v1/summaries", headers=headers)
    assert (response.status_code, response.json["error"]) == (403, "forbidden")


def test_enrolment_is_audited_and_the_token_is_stored_only_hashed(tmp_path: Path,
                                                                   app: Flask) -> None:
    token = new_token(app, "gw-01", "plant-a")
    app.test_client().post("/enrol/v1/csr", json={"csr": _csr(tmp_path)},
                           headers={"Authorization": f"Bearer {token}"})
    with database.sessions(app)() as session:
        entries = [e for e in auditlog.entries(session) if e.event == "gateway.enrol"]
        stored = session.get(enrol_store.InstallerToken, enrol_store.token_hash(token))
        assert stored is not None and stored.used_ms is not None
        assert enrol_store.group_of(session, "gw-01") == "plant-a"
    assert len(entries) == 1 and entries[0].actor == "installer:gw-01"
    assert '"group":"plant-a"' in entries[0].detail
    raw = Path(database.engine(app).url.database or "").read_bytes()
    assert token.encode() not in raw


def _enrol(app: Flask, csr: str, gateway: str = "gw-01") -> tuple[int, str]:
    response = app.test_client().post(
        "/enrol/v1/csr", json={"csr": csr},
        headers={"Authorization": f"Bearer {new_token(app, gateway)}"})
    return response.status_code, str(response.json.get("error", response.json.get("gateway")))


def test_an_installer_token_cannot_reactivate_a_revoked_gateway_until_an_admin_readmits_it(
        tmp_path: Path, app: Flask, kit: SimpleNamespace) -> None:
    assert _enrol(app, _csr(tmp_path, "gw-01")) == (200, "gw-01")
    with database.sessions(app).begin() as session:
        registry.revoke_gateway(session, "gw-01")
    fresh = _csr(tmp_path / "new", "gw-01")
    assert _enrol(app, fresh) == (403, "revoked_gateway")
    with database.sessions(app)() as session:
        assert registry.find_gateway(session, "gw-01").status == "revoked"

    client = app.test_client()
    operator = {"Authorization": f"Bearer {kit.token_for(app, 'operator')}"}
    admin = {"Authorization": f"Bearer {kit.token_for(app, 'admin')}"}
    assert client.post("/api/v1/gateways/gw-01/readmit", headers=operator).status_code == 403
    readmitted = client.post("/api/v1/gateways/gw-01/readmit", headers=admin)
    assert readmitted.json == {"gateway": "gw-01", "status": "readmitted"}
    assert client.post("/api/v1/gateways/gw-01/readmit", headers=admin).status_code == 409
    assert _enrol(app, fresh) == (200, "gw-01")
    with database.sessions(app)() as session:
        assert registry.find_gateway(session, "gw-01").active
        readmits = [e for e in auditlog.entries(session) if e.event == "gateway.readmit"]
    assert len(readmits) == 1 and readmits[0].actor == "token:admin-user/t1"
