"""Specification of enrolment: a CSR signed inside the key store, certified by the site CA."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from tandem.gateway.identity.csr import KeyStoreSigningKey, build_csr
from tandem.gateway.identity.keystore import SoftwareKeyStore
from tandem.gateway.identity.tpm_keystore import TpmKeyStore
from tandem.tools.pki import PKIError, Role, SiteCA
from tests.tpm import SoftwareTpm, needs_swtpm


@pytest.fixture
def ca(tmp_path: Path) -> SiteCA:
    """A fresh site CA."""
    return SiteCA.create(tmp_path / "pki", "site-a")


@pytest.fixture
def tpm(tmp_path: Path) -> Iterator[SoftwareTpm]:
    """A running swtpm, stopped even when the test fails."""
    with SoftwareTpm(tmp_path / "swtpm") as running:
        yield running


def _spki(key: object) -> bytes:
    assert isinstance(key, ec.EllipticCurvePublicKey)
    return key.public_bytes(serialization.Encoding.DER,
                            serialization.PublicFormat.SubjectPublicKeyInfo)


def _check_issued(cert: x509.Certificate, ca: SiteCA, public: ec.EllipticCurvePublicKey) -> None:
    assert _spki(cert.public_key()) == _spki(public)
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "gw-01"
    assert cert.issuer == ca.cert.subject
    cert.verify_directly_issued_by(ca.cert)
    usages = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert ExtendedKeyUsageOID.CLIENT_AUTH in usages
    assert cert.not_valid_after_utc > dt.datetime.now(dt.UTC)


@needs_swtpm
def test_csr_from_the_tpm_key_is_certified_by_the_site_ca(tmp_path: Path, tpm: SoftwareTpm,
                                                          ca: SiteCA) -> None:
    with TpmKeyStore(tpm.tcti, tmp_path / "keystore") as store:
        csr_pem = build_csr(store, "gw-01")
        cert = ca.sign_csr(csr_pem, Role.GATEWAY)
        _check_issued(cert, ca, store.public_key())


def test_csr_from_a_software_key_is_certified_too(tmp_path: Path, ca: SiteCA) -> None:
    store = SoftwareKeyStore.generate(tmp_path / "key.pem", b"passphrase")
    cert = ca.sign_csr(build_csr(store, "gw-01"), Role.GATEWAY)
    _check_issued(cert, ca, store.public_key())


def test_the_ca_refuses_a_csr_without_proof_of_possession(tmp_path: Path, ca: SiteCA) -> None:
    store = SoftwareKeyStore.generate(tmp_path / "key.pem", b"passphrase")
    der = bytearray(x509.load_pem_x509_csr(build_csr(store, "gw-01"))
                    .public_bytes(serialization.Encoding.DER))
    der[-1] ^= 1  # last byte of the signature
    forged = x509.load_der_x509_csr(bytes(der)).public_bytes(serialization.Encoding.PEM)
    with pytest.raises(PKIError, match="proof of key possession"):
        ca.sign_csr(forged, Role.GATEWAY)


def test_the_ca_refuses_a_bad_name_or_garbage(tmp_path: Path, ca: SiteCA) -> None:
    store = SoftwareKeyStore.generate(tmp_path / "key.pem", b"passphrase")
    with pytest.raises(PKIError, match="name"):
        ca.sign_csr(build_csr(store, "../gw"), Role.GATEWAY)
    with pytest.raises(PKIError, match="not a PEM CSR"):
        ca.sign_csr(b"garbage", Role.GATEWAY)


def test_the_signing_adapter_cannot_export_or_use_other_algorithms(tmp_path: Path) -> None:
    key = KeyStoreSigningKey(SoftwareKeyStore.generate(tmp_path / "key.pem", b"passphrase"))
    with pytest.raises(TypeError):
        key.private_numbers()
    with pytest.raises(ValueError, match="SHA-256 only"):
        key.sign(b"x", ec.ECDSA(hashes.SHA384()))
