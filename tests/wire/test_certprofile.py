"""Specification of the site certificate profile: role in the OU and the usages, names, CSRs."""

from __future__ import annotations

import datetime as dt

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from cryptography.x509.verification import PolicyBuilder, Store

from tandem.wire.certprofile import (
    CertRequest,
    Issuer,
    ProfileError,
    Role,
    certified_name,
    certify_csr,
    check_name,
    issue,
    new_site_ca,
    read_csr,
)


@pytest.fixture(scope="module")
def ca() -> Issuer:
    """One site CA for the module (key generation is the slow part)."""
    return new_site_ca("site-a")


def _csr(name: str, key: ec.EllipticCurvePrivateKey | None = None, cns: int = 1) -> bytes:
    key = key or ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)] * cns)
    csr = x509.CertificateSigningRequestBuilder().subject_name(subject).sign(key, hashes.SHA256())
    return csr.public_bytes(serialization.Encoding.PEM)


def _spki(key: object) -> bytes:
    assert isinstance(key, ec.EllipticCurvePublicKey)
    return key.public_bytes(serialization.Encoding.DER,
                            serialization.PublicFormat.SubjectPublicKeyInfo)


def _request(name: str) -> CertRequest:
    return CertRequest(name, ec.generate_private_key(ec.SECP256R1()).public_key())


@pytest.mark.parametrize(("role", "usages"), [
    (Role.GATEWAY, {ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH}),
    (Role.DEVICE, {ExtendedKeyUsageOID.CLIENT_AUTH}),
    (Role.SERVER, {ExtendedKeyUsageOID.SERVER_AUTH}),
])
def test_the_role_is_in_the_ou_and_in_the_extended_key_usage(ca: Issuer, role: Role,
                                                             usages: set[object]) -> None:
    cert = issue(ca, _request("unit-1"), role, hosts=("127.0.0.1", "edge.local"))
    ous = [a.value for a in cert.subject.get_attributes_for_oid(NameOID.ORGANIZATIONAL_UNIT_NAME)]
    assert ous == [role.value]
    assert set(cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value) == usages
    sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert sans.get_values_for_type(x509.DNSName) == ["unit-1", "edge.local"]
    assert [str(ip) for ip in sans.get_values_for_type(x509.IPAddress)] == ["127.0.0.1"]
    assert certified_name(cert, role) == "unit-1"
    cert.verify_directly_issued_by(ca.cert)


def test_a_leaf_chains_to_its_site_ca_and_cannot_sign(ca: Issuer) -> None:
    cert = issue(ca, _request("gw-01"), Role.GATEWAY)
    verifier = PolicyBuilder().store(Store([ca.cert])).build_client_verifier()
    verifier.verify(cert, [])
    assert not cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert cert.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)[0].value == "site-a"
    assert cert.not_valid_before_utc <= dt.datetime.now(dt.UTC) < cert.not_valid_after_utc


def test_a_certificate_of_another_role_is_refused_with_a_stable_reason(ca: Issuer) -> None:
    device = issue(ca, _request("node-07"), Role.DEVICE)
    with pytest.raises(ProfileError) as refused:
        certified_name(device, Role.GATEWAY)
    assert refused.value.reason == "wrong_role"


@pytest.mark.parametrize("name", ["", ".hidden", "../gw", "a b", "x" * 65, "gw/01"])
def test_names_that_are_not_a_cn_a_file_and_a_dns_label_are_refused(name: str) -> None:
    with pytest.raises(ProfileError, match="name") as refused:
        check_name(name)
    assert refused.value.reason == "bad_name"


def test_a_csr_gives_its_name_and_key_once_it_proves_possession(ca: Issuer) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    request = read_csr(_csr("gw-02", key))
    assert request.name == "gw-02"
    assert _spki(request.public_key) == _spki(key.public_key())
    cert = certify_csr(ca, _csr("gw-02", key), Role.GATEWAY, valid_days=30)
    assert _spki(cert.public_key()) == _spki(key.public_key())
    assert certified_name(cert, Role.GATEWAY) == "gw-02"


@pytest.mark.parametrize(("csr", "reason", "words"), [
    (b"garbage", "bad_csr", "not a PEM CSR"),
    (_csr("gw", cns=2), "bad_csr", "exactly one CN"),
    (_csr("../gw"), "bad_name", "name"),
    (_csr("gw", ec.generate_private_key(ec.SECP384R1())), "bad_key", "P-256"),
])
def test_a_csr_outside_the_profile_is_refused(csr: bytes, reason: str, words: str) -> None:
    with pytest.raises(ProfileError, match=words) as refused:
        read_csr(csr)
    assert refused.value.reason == reason
