"""Enrolment end to end in one process: token -> key store key -> CSR -> certificate -> uploads.

The gateway's real enrolment client talks to the real cloud app through
httpx's WSGI transport; the key lives in a swtpm-backed TPM or in a
passphrase-encrypted file.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from cryptography import x509
from flask import Flask

from tandem.cloud.db import engine as database
from tandem.cloud.fleet import registry
from tandem.gateway.identity import enrolled
from tandem.gateway.identity import enrolment as enrol_client
from tandem.gateway.identity.kinds import open_keystore
from tandem.tools.pki import SiteCA
from tests import enrolkit
from tests.enrolkit import (
    gateway_config,
    new_token,
    wsgi_client,
)
from tests.enrolkit import upload_summary as _upload
from tests.tpm import SoftwareTpm, needs_swtpm

ca = enrolkit.ca  # fixtures: the site CA and a cloud app on it
app = enrolkit.app


@needs_swtpm
def test_tpm_key_is_enrolled_and_its_uploads_verify(tmp_path: Path, ca: SiteCA,
                                                   app: Flask) -> None:
    with SoftwareTpm(tmp_path / "swtpm") as tpm:
        config = gateway_config(tmp_path / "gw", ca, keystore="tpm", tcti=tpm.tcti)
        result = enrol_client.enrol(config, "http://cloud", new_token(app, "gw-01", "plant-a"),
                                    client=wsgi_client(app))
        assert (result.group, result.policy_key_pem is not None) == ("plant-a", True)
        cert = x509.load_pem_x509_certificate(result.cert_pem.encode())
        cert.verify_directly_issued_by(ca.cert)
        with open_keystore(config.identity, config.gateway.data_dir) as store:
            assert store.hardware_backed
            assert cert.public_key() == store.public_key()
            assert _upload(app.test_client(), "gw-01", 1, store) == (200, "")
    assert enrolled.load(config.gateway.data_dir) == result


def test_file_key_is_created_encrypted_and_enrolled(tmp_path: Path, ca: SiteCA,
                                                    app: Flask) -> None:
    config = gateway_config(tmp_path / "gw", ca)
    enrol_client.enrol(config, "http://cloud", new_token(app, "gw-01"), client=wsgi_client(app))
    assert b"ENCRYPTED PRIVATE KEY" in config.identity.key.read_bytes()
    store = open_keystore(config.identity, config.gateway.data_dir)
    assert _upload(app.test_client(), "gw-01", 1, store) == (200, "")


def test_a_token_works_once(tmp_path: Path, ca: SiteCA, app: Flask) -> None:
    token = new_token(app, "gw-01")
    config = gateway_config(tmp_path / "gw", ca)
    enrol_client.enrol(config, "http://cloud", token, client=wsgi_client(app))
    with pytest.raises(enrol_client.EnrolError, match="401 invalid_token"):
        enrol_client.enrol(config, "http://cloud", token, client=wsgi_client(app))


def test_an_expired_token_or_one_for_another_gateway_is_refused(tmp_path: Path, ca: SiteCA,
                                                                app: Flask) -> None:
    config = gateway_config(tmp_path / "gw", ca)
    expired = new_token(app, "gw-01", ttl_s=60, now_ms=time.time_ns() // 1_000_000 - 61_000)
    with pytest.raises(enrol_client.EnrolError, match="401 invalid_token"):
        enrol_client.enrol(config, "http://cloud", expired, client=wsgi_client(app))
    with pytest.raises(enrol_client.EnrolError, match=r"422 bad_csr.*gw-02"):
        enrol_client.enrol(config, "http://cloud", new_token(app, "gw-02"),
                           client=wsgi_client(app))


def test_renewal_with_the_current_key_then_revocation_refuses_uploads(
        tmp_path: Path, ca: SiteCA, app: Flask) -> None:
    config = gateway_config(tmp_path / "gw", ca)
    first = enrol_client.enrol(config, "http://cloud", new_token(app, "gw-01"),
                               client=wsgi_client(app))
    renewed = enrol_client.renew(config, client=wsgi_client(app))
    assert renewed.serial != first.serial and renewed.group == first.group
    store = open_keystore(config.identity, config.gateway.data_dir)
    client = app.test_client()
    assert _upload(client, "gw-01", 1, store) == (200, "")
    with database.sessions(app).begin() as session:
        registry.revoke_gateway(session, "gw-01")
    assert _upload(client, "gw-01", 2, store) == (403, "revoked_gateway")
    with pytest.raises(enrol_client.EnrolError, match="403 revoked_gateway"):
        enrol_client.renew(config, client=wsgi_client(app))
    with pytest.raises(enrol_client.EnrolError, match="403 revoked_key"):
        enrol_client.enrol(config, "http://cloud", new_token(app, "gw-01"),
                           client=wsgi_client(app))
