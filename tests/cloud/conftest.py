"""Fixtures for the cloud service: a site PKI, an app with registered gateways, signed batches.

Credentials: `client` sends an admin's API token with every request (so
tests of the data API need not sign in); `anonymous` sends none. Use
`token_for(app, role)` for any other role.

Storage: the `app` fixture runs on SQLite unless the test (or its module) is
marked `@pytest.mark.storages(...)` with some of STORAGES; then it runs once
per storage, against a real PostgreSQL and/or a real influxd (tests/services.py).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import inspect, text
from werkzeug.test import TestResponse

from tandem.cloud import close_app, create_app
from tandem.cloud.access import accounts
from tandem.cloud.db import engine as database
from tandem.cloud.fleet import registry
from tandem.cloud.fleet.enrolment import check_gateway_cert
from tandem.cloud.timeseries import store as timeseries
from tandem.cloud.timeseries.store import EventQuery, SummaryQuery
from tandem.tools.pki import Identity, Role, SiteCA
from tandem.wire.batch import Batch, Event, Record, Summary, encode_batch
from tandem.wire.cose import MEDIA_TYPE, SoftwareSigner, sign1
from tests.services import (  # noqa: F401 (fixtures)
    influx_database,
    influx_server,
    postgres_cluster,
    postgres_database,
)

# registry database + time-series backend
STORAGES = ("sqlite", "influxdb", "postgresql", "postgresql+influxdb")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "storages(*names): run the test once per storage "
                                       f"named (of {', '.join(STORAGES)})")


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    marker = metafunc.definition.get_closest_marker("storages")
    if marker is not None and "storage" in metafunc.fixturenames:
        unknown = set(marker.args) - set(STORAGES)
        assert not unknown, f"unknown storages {unknown}"
        metafunc.parametrize("storage", marker.args, indirect=True)


@pytest.fixture
def storage(request: pytest.FixtureRequest) -> str:
    """The storage this test runs on (see STORAGES); SQLite unless parametrized."""
    return str(getattr(request, "param", "sqlite"))


@pytest.fixture
def storage_config(request: pytest.FixtureRequest, storage: str) -> Iterator[dict[str, Any]]:
    """Config sections pointing at fresh databases of the storage, dropped afterwards."""
    with contextlib.ExitStack() as stack:
        config: dict[str, Any] = {}
        if storage.startswith("postgresql"):
            cluster = request.getfixturevalue("postgres_cluster")
            config["database"] = {"url": stack.enter_context(postgres_database(cluster))}
        if storage.endswith("influxdb"):
            server = request.getfixturevalue("influx_server")
            config["timeseries"] = {"backend": "influxdb", "url": server.url,
                                    "database": stack.enter_context(influx_database(server))}
        yield config


@dataclass(frozen=True)
class SitePKI:
    """A site CA with the identities the tests use."""

    ca: SiteCA
    gateway: Identity  # gw-01, registered
    other_gateway: Identity  # gw-02, registered
    unregistered: Identity  # gw-99, never registered
    revoked: Identity  # gw-old, registered then revoked
    device: Identity  # dev-1, a device certificate
    server: Identity  # cloud, for HTTPS on 127.0.0.1


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> SitePKI:
    """One site PKI for the whole session (key generation is the slow part)."""
    ca = SiteCA.create(tmp_path_factory.mktemp("pki"), "acme")
    return SitePKI(
        ca=ca,
        gateway=ca.issue("gw-01", Role.GATEWAY),
        other_gateway=ca.issue("gw-02", Role.GATEWAY),
        unregistered=ca.issue("gw-99", Role.GATEWAY),
        revoked=ca.issue("gw-old", Role.GATEWAY),
        device=ca.issue("dev-1", Role.DEVICE),
        server=ca.issue("cloud", Role.SERVER, ("127.0.0.1", "localhost")),
    )


def app_config(tmp_path: Path, pki: SitePKI, **ingest: int) -> dict[str, Any]:
    """A development config mapping with its data under tmp_path."""
    return {"version": 1, "mode": "development", "data_dir": str(tmp_path / "data"),
            "server": {"trust_ca": str(pki.ca.cert_pem_path)}, "ingest": dict(ingest)}


def register(app: Flask, identity: Identity, trust_ca: Path) -> None:
    """Register identity's certificate as a gateway of app."""
    checked = check_gateway_cert(identity.name, identity.cert_pem.read_bytes(),
                                 trust_ca.read_bytes())
    with database.sessions(app).begin() as session:
        registry.add_gateway(session, checked.name, checked.cert_pem, checked.public_key_pem,
                             checked.fingerprint, now_ms())


@pytest.fixture
def app(tmp_path: Path, pki: SitePKI, storage_config: dict[str, Any]) -> Iterator[Flask]:
    """An app with gw-01 and gw-02 active and gw-old revoked, on the test's storage."""
    application = create_app(app_config(tmp_path, pki) | storage_config)
    for identity in (pki.gateway, pki.other_gateway, pki.revoked):
        register(application, identity, pki.ca.cert_pem_path)
    with database.sessions(application).begin() as session:
        registry.revoke_gateway(session, pki.revoked.name)
    yield application
    close_app(application)


def token_for(app: Flask, role: str, user: str | None = None) -> str:
    """An API token of a token-only user with role (created as <role>-user unless named)."""
    name = user or f"{role}-user"
    with database.sessions(app).begin() as session:
        if accounts.find_user(session, name) is None:
            accounts.add_user(session, name, role, None, now_ms())
        count = len(accounts.list_tokens(session, name))
        return accounts.create_token(session, name, f"t{count + 1}", now_ms())


def bearer(token: str) -> dict[str, str]:
    """The Authorization header carrying token."""
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
def admin_token(app: Flask) -> str:
    """An API token of an admin."""
    return token_for(app, "admin")


@pytest.fixture
def client(app: Flask, admin_token: str) -> FlaskClient:
    """Test client of app that authenticates as an admin (by API token)."""
    test_client = app.test_client()
    test_client.environ_base["HTTP_AUTHORIZATION"] = f"Bearer {admin_token}"
    return test_client


@pytest.fixture
def anonymous(app: Flask) -> FlaskClient:
    """Test client of app without credentials."""
    return app.test_client()


def now_ms() -> int:
    """The current Unix time in ms."""
    return time.time_ns() // 1_000_000


def summary(device: str = "dev-1", channel: str = "temp", t0_ms: int = 1_000_000,
            mean: float = 20.0, count: int = 10) -> Summary:
    """A one-minute summary around mean."""
    return Summary(device=device, channel=channel, t0_ms=t0_ms, t1_ms=t0_ms + 60_000,
                   count=count, minimum=mean - 1, maximum=mean + 1, mean=mean, last=mean + 0.5)


def event(device: str = "dev-1", name: str = "overheat", t_ms: int = 1_000_000,
          severity: int = 2) -> Event:
    """An event with one context value."""
    return Event(device=device, name=name, t_ms=t_ms, severity=severity, values={"temp": 81.5})


def signer_of(identity: Identity) -> SoftwareSigner:
    """A signer holding identity's private key."""
    key = serialization.load_pem_private_key(identity.key_pem.read_bytes(), None)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    return SoftwareSigner(key)


def envelope(identity: Identity, seq: int, records: Sequence[Record] = (),
             gateway: str | None = None, kid: str | None = None,
             sent_ms: int | None = None, epoch: int = 0) -> bytes:
    """A batch signed by identity; gateway/kid default to identity's name."""
    batch = Batch(gateway=gateway or identity.name, seq=seq,
                  sent_ms=now_ms() if sent_ms is None else sent_ms,
                  records=tuple(records) or (summary(),), epoch=epoch)
    return sign1(encode_batch(batch), kid or identity.name, signer_of(identity))


def post(client: FlaskClient, body: bytes, content_type: str = MEDIA_TYPE) -> TestResponse:
    """POST body to the ingest endpoint."""
    return client.post("/ingest/v1/batches", data=body, headers={"Content-Type": content_type})


def snapshot(app: Flask) -> dict[str, list[Any]]:
    """Every registry row and every stored point, to show that a request changed nothing.

    Keys: the registry's table names, plus "summaries" and "events" as the
    time-series store returns them (whichever backend holds them). The audit
    log and its refusal counters are left out: refusing a forged batch is meant to add
    a row there.
    """
    engine = database.engine(app)
    with engine.connect() as conn:
        tables: dict[str, list[Any]] = {
            table: sorted(tuple(r) for r in conn.execute(text(f"SELECT * FROM {table}")))
            for table in inspect(conn).get_table_names()
            if not table.startswith("ts_") and table not in ("audit_log", "audit_refusals")}
    store = timeseries.store(app)
    tables["summaries"] = list(store.iter_summaries(SummaryQuery()))
    tables["events"] = list(store.iter_events(EventQuery()))
    return tables


@pytest.fixture(scope="session")
def kit() -> SimpleNamespace:
    """The helpers above, as a fixture: test modules cannot import conftest in every import mode."""
    return SimpleNamespace(app_config=app_config, register=register, now_ms=now_ms,
                           summary=summary, event=event, signer_of=signer_of,
                           envelope=envelope, post=post, snapshot=snapshot,
                           token_for=token_for, bearer=bearer)
