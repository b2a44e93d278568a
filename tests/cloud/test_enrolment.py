"""Gateway certificates: must chain to the site CA, name the gateway, and be a gateway's."""

from __future__ import annotations

import pytest

from tandem.cloud.fleet.enrolment import EnrolmentError, check_gateway_cert
from tandem.tools.pki import Role, SiteCA


def test_gateway_cert_from_the_site_ca_is_accepted(pki):
    identity = check_gateway_cert("gw-01", pki.gateway.cert_pem.read_bytes(),
                                  pki.ca.cert_pem_path.read_bytes())
    assert identity.name == "gw-01"
    assert identity.public_key_pem.startswith("-----BEGIN PUBLIC KEY-----")
    assert identity.fingerprint.startswith("sha256:") and len(identity.fingerprint) == 71


def test_cn_must_equal_the_name(pki):
    with pytest.raises(EnrolmentError, match="CN"):
        check_gateway_cert("gw-02", pki.gateway.cert_pem.read_bytes(),
                           pki.ca.cert_pem_path.read_bytes())


def test_cert_from_another_ca_is_refused(pki, tmp_path):
    stranger = SiteCA.create(tmp_path / "other", "evil").issue("gw-01", Role.GATEWAY)
    with pytest.raises(EnrolmentError, match="does not chain"):
        check_gateway_cert("gw-01", stranger.cert_pem.read_bytes(),
                           pki.ca.cert_pem_path.read_bytes())


def test_device_or_server_cert_is_refused(pki):
    with pytest.raises(EnrolmentError):
        check_gateway_cert("dev-1", pki.device.cert_pem.read_bytes(),
                           pki.ca.cert_pem_path.read_bytes())
    with pytest.raises(EnrolmentError):
        check_gateway_cert("cloud", pki.server.cert_pem.read_bytes(),
                           pki.ca.cert_pem_path.read_bytes())


def test_garbage_is_a_readable_error(pki):
    with pytest.raises(EnrolmentError, match="not a PEM certificate"):
        check_gateway_cert("gw-01", b"hello", pki.ca.cert_pem_path.read_bytes())
