"""Specification of the TPM key store, against a real swtpm process per test.

The identity key is born in the TPM and cannot leave it; it and the sealed
secrets survive restarts of both the gateway and the TPM; a PCR-bound secret
is refused once a PCR it is bound to has been extended.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from tandem.gateway.config import IdentitySection
from tandem.gateway.identity.keystore import KeyStoreError
from tandem.gateway.identity.kinds import open_keystore
from tandem.gateway.identity.tpm import PolicyFailed
from tandem.gateway.identity.tpm_keystore import TpmKeyStore
from tandem.wire.cose import sign1, verify1
from tests.tpm import SoftwareTpm, needs_swtpm

pytestmark = needs_swtpm

SECRET = bytes(range(100, 132))
DEBUG_PCR = 16  # resettable, extendable at locality 0, zero after TPM start-up


@pytest.fixture
def tpm(tmp_path: Path) -> Iterator[SoftwareTpm]:
    """A running swtpm with its state under tmp_path; stopped even when the test fails."""
    with SoftwareTpm(tmp_path / "swtpm") as running:
        yield running


@pytest.fixture
def state(tmp_path: Path) -> Path:
    """The gateway's key-store directory."""
    return tmp_path / "data" / "keystore"


def _der(key: ec.EllipticCurvePublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.DER,
                            serialization.PublicFormat.SubjectPublicKeyInfo)


def test_identity_key_is_born_in_the_tpm_and_not_exportable(tpm: SoftwareTpm,
                                                            state: Path) -> None:
    with TpmKeyStore(tpm.tcti, state) as store:
        attributes = store.key_attributes()
        assert store.hardware_backed is True
    assert {"fixedtpm", "fixedparent", "sensitivedataorigin", "userwithauth",
            "sign"} <= attributes
    assert "decrypt" not in attributes and "restricted" not in attributes
    assert b"BEGIN TSS2 PRIVATE KEY" in (state / "identity.tss2.pem").read_bytes()
    assert (state / "identity.tss2.pem").stat().st_mode & 0o077 == 0


def test_signatures_verify_with_cryptography_and_cose(tpm: SoftwareTpm, state: Path) -> None:
    with TpmKeyStore(tpm.tcti, state) as store:
        store.public_key().verify(store.sign_der(b"batch"), b"batch",
                                  ec.ECDSA(hashes.SHA256()))
        envelope = sign1(b"readings", "gw-01", store)
        assert verify1(envelope, lambda kid: store.public_key()).payload == b"readings"


def test_key_survives_gateway_and_tpm_restarts(tpm: SoftwareTpm, state: Path) -> None:
    with TpmKeyStore(tpm.tcti, state) as store:
        before = store.public_key()
    tpm.restart()
    with TpmKeyStore(tpm.tcti, state, create=False) as store:
        assert _der(store.public_key()) == _der(before)
        signature = store.sign_der(b"after restart")
    before.verify(signature, b"after restart", ec.ECDSA(hashes.SHA256()))


def test_a_key_blob_is_useless_with_another_tpm(tmp_path: Path, tpm: SoftwareTpm,
                                                state: Path) -> None:
    TpmKeyStore(tpm.tcti, state).close()
    with SoftwareTpm(tmp_path / "other-swtpm") as other, \
            pytest.raises(KeyStoreError, match="load key"):
        TpmKeyStore(other.tcti, state)


def test_sealed_secret_survives_gateway_and_tpm_restarts(tpm: SoftwareTpm,
                                                         state: Path) -> None:
    with TpmKeyStore(tpm.tcti, state) as store:
        store.seal("data-key", SECRET)
        assert store.unseal("data-key") == SECRET
    tpm.restart()
    with TpmKeyStore(tpm.tcti, state) as store:
        assert store.unseal("data-key") == SECRET
    blob = (state / "sealed" / "data-key.tpmseal").read_bytes()
    assert SECRET not in blob


def test_pcr_bound_secret_is_refused_after_a_pcr_extend(tpm: SoftwareTpm, state: Path) -> None:
    with TpmKeyStore(tpm.tcti, state) as store:
        store.seal("pseudonym-key", SECRET, pcrs=[DEBUG_PCR])
        assert store.unseal("pseudonym-key") == SECRET
        store.tpm.extend_pcr(DEBUG_PCR, b"an unexpected measurement")
        with pytest.raises(PolicyFailed, match="PCR"):
            store.unseal("pseudonym-key")
    tpm.restart()  # PCR 16 is back to its start-up value: the policy holds again
    with TpmKeyStore(tpm.tcti, state) as store:
        assert store.unseal("pseudonym-key") == SECRET


def test_renamed_or_missing_sealed_files_are_refused(tpm: SoftwareTpm, state: Path) -> None:
    with TpmKeyStore(tpm.tcti, state) as store:
        store.seal("a", SECRET)
        (state / "sealed" / "a.tpmseal").rename(state / "sealed" / "b.tpmseal")
        with pytest.raises(KeyStoreError, match="another name"):
            store.unseal("b")
        with pytest.raises(KeyStoreError, match="no sealed secret"):
            store.unseal("a")
        with pytest.raises(KeyStoreError, match=r"1\.\.112 bytes"):
            store.seal("big", bytes(113))


def test_no_transient_object_is_left_in_the_tpm(tpm: SoftwareTpm, state: Path) -> None:
    with TpmKeyStore(tpm.tcti, state) as store:
        for _ in range(5):  # more than the 3 slots a TPM without resource manager has
            store.seal("k", SECRET, pcrs=[DEBUG_PCR])
            assert store.unseal("k") == SECRET
            store.sign_der(b"x")
        assert store.tpm.loaded_handles() == []


def test_factory_opens_the_tpm_keystore_from_config(tmp_path: Path, tpm: SoftwareTpm) -> None:
    identity = IdentitySection(cert=tmp_path / "c", key=tmp_path / "k", ca=tmp_path / "ca",
                               keystore="tpm", tcti=tpm.tcti)
    store = open_keystore(identity, tmp_path / "data")
    try:
        assert store.hardware_backed
        assert (tmp_path / "data" / "keystore" / "identity.tss2.pem").exists()
    finally:
        store.close()


def test_an_unreachable_tpm_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(KeyStoreError, match="cannot open TPM"):
        TpmKeyStore("swtpm:host=127.0.0.1,port=1", tmp_path)


def test_measured_figures(tpm: SoftwareTpm, state: Path,
                          capsys: pytest.CaptureFixture[str]) -> None:
    began = time.perf_counter()
    store = TpmKeyStore(tpm.tcti, state)
    opened_ms = (time.perf_counter() - began) * 1000
    try:
        sign_ms = _mean_ms(lambda: store.sign_der(b"x" * 1000), 200)
        seal_ms = _mean_ms(lambda: store.seal("k", SECRET), 20)
        unseal_ms = _mean_ms(lambda: store.unseal("k"), 20)
    finally:
        store.close()
    with capsys.disabled():
        print(f"\n[tpm] swtpm start {tpm.start_s * 1000:.1f} ms, "
              f"create+open key {opened_ms:.1f} ms, sign {sign_ms:.2f} ms, "
              f"seal {seal_ms:.2f} ms, unseal {unseal_ms:.2f} ms")
    assert sign_ms < 20


def _mean_ms(call: Callable[[], object], n: int) -> float:
    began = time.perf_counter()
    for _ in range(n):
        call()
    return (time.perf_counter() - began) * 1000 / n
