"""Specification of the software key store: plain or encrypted key file, sealed secrets.

Whatever the mode, no private key and no sealed secret is on disk in plaintext
once a passphrase is configured; a wrong or missing passphrase is a clear error.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from tandem.gateway.config import IdentitySection, load_config
from tandem.gateway.identity import passbox
from tandem.gateway.identity.keystore import KeyStoreError, SoftwareKeyStore, write_encrypted_key
from tandem.gateway.identity.kinds import open_keystore
from tandem.wire.cose import sign1, verify1

PASS = b"correct horse battery staple"
SECRET = bytes(range(7, 39))  # 32 distinctive bytes


def _plain_key(path: Path) -> ec.EllipticCurvePrivateKey:
    key = ec.generate_private_key(ec.SECP256R1())
    path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                       serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption()))
    os.chmod(path, 0o600)
    return key


def _identity(tmp_path: Path, **fields: object) -> IdentitySection:
    base: dict[str, object] = {"cert": tmp_path / "cert.pem", "key": tmp_path / "key.pem",
                               "ca": tmp_path / "ca.pem"}
    return IdentitySection(**(base | fields))  # type: ignore[arg-type]


def test_plain_pem_key_still_works_and_warns_loudly(tmp_path: Path,
                                                     caplog: pytest.LogCaptureFixture) -> None:
    key = _plain_key(tmp_path / "key.pem")
    with caplog.at_level(logging.WARNING):
        store = SoftwareKeyStore(tmp_path / "key.pem")
    assert "UNENCRYPTED" in caplog.text
    assert store.hardware_backed is False and store.key_encrypted is False
    store.public_key().verify(store.sign_der(b"batch"), b"batch", ec.ECDSA(hashes.SHA256()))
    assert store.public_key().public_numbers() == key.public_key().public_numbers()


def test_encrypted_key_file_round_trip(tmp_path: Path) -> None:
    created = SoftwareKeyStore.generate(tmp_path / "key.pem", PASS)
    pem = (tmp_path / "key.pem").read_bytes()
    assert pem.startswith(b"-----BEGIN ENCRYPTED PRIVATE KEY-----")
    assert (tmp_path / "key.pem").stat().st_mode & 0o077 == 0
    reopened = SoftwareKeyStore(tmp_path / "key.pem", PASS)
    assert reopened.key_encrypted and not reopened.hardware_backed
    envelope = sign1(b"payload", "gw-01", reopened)
    assert verify1(envelope, lambda kid: created.public_key()).payload == b"payload"


def test_a_plain_key_can_be_migrated_to_an_encrypted_file(tmp_path: Path) -> None:
    key = _plain_key(tmp_path / "plain.pem")
    write_encrypted_key(key, tmp_path / "key.pem", PASS)
    store = SoftwareKeyStore(tmp_path / "key.pem", PASS)
    assert store.public_key().public_numbers() == key.public_key().public_numbers()


def test_wrong_or_missing_passphrase_is_a_clear_error(tmp_path: Path) -> None:
    SoftwareKeyStore.generate(tmp_path / "key.pem", PASS)
    with pytest.raises(KeyStoreError, match="wrong passphrase"):
        SoftwareKeyStore(tmp_path / "key.pem", b"not it")
    with pytest.raises(KeyStoreError, match="is encrypted: set its passphrase"):
        SoftwareKeyStore(tmp_path / "key.pem")


def test_generate_refuses_to_overwrite(tmp_path: Path) -> None:
    SoftwareKeyStore.generate(tmp_path / "key.pem", PASS)
    with pytest.raises(KeyStoreError, match="refusing to overwrite"):
        SoftwareKeyStore.generate(tmp_path / "key.pem", PASS)


def test_sealed_secret_survives_a_restart_and_needs_the_passphrase(tmp_path: Path) -> None:
    sealed = tmp_path / "sealed"
    SoftwareKeyStore.generate(tmp_path / "key.pem", PASS, sealed).seal("data-key", SECRET)
    assert SoftwareKeyStore(tmp_path / "key.pem", PASS, sealed).unseal("data-key") == SECRET
    assert (sealed / "data-key.sealed").stat().st_mode & 0o077 == 0
    other = tmp_path / "other.pem"
    write_encrypted_key(ec.generate_private_key(ec.SECP256R1()), other, b"other pass")
    with pytest.raises(KeyStoreError, match="wrong passphrase"):
        SoftwareKeyStore(other, b"other pass", sealed).unseal("data-key")


def test_a_sealed_file_renamed_to_another_name_is_refused(tmp_path: Path) -> None:
    store = SoftwareKeyStore.generate(tmp_path / "key.pem", PASS, tmp_path / "sealed")
    store.seal("pseudonym-key", SECRET)
    os.rename(tmp_path / "sealed" / "pseudonym-key.sealed", tmp_path / "sealed" / "x.sealed")
    with pytest.raises(KeyStoreError, match="renamed or altered"):
        store.unseal("x")


def test_sealing_without_a_passphrase_is_refused(tmp_path: Path) -> None:
    _plain_key(tmp_path / "key.pem")
    store = SoftwareKeyStore(tmp_path / "key.pem", None, tmp_path / "sealed")
    with pytest.raises(KeyStoreError, match="needs a passphrase"):
        store.seal("data-key", SECRET)


@pytest.mark.parametrize("name", ["", "../escape", ".hidden", "a/b", "x" * 65])
def test_secret_names_cannot_escape_the_directory(tmp_path: Path, name: str) -> None:
    store = SoftwareKeyStore.generate(tmp_path / "key.pem", PASS, tmp_path / "sealed")
    with pytest.raises(KeyStoreError, match="secret name"):
        store.seal(name, SECRET)


def test_no_plaintext_key_or_secret_in_the_data_dir(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    (tmp_path / "pass").write_bytes(PASS + b"\n")
    identity = _identity(tmp_path, key=data / "key.pem", passphrase_file=tmp_path / "pass")
    SoftwareKeyStore.generate(data / "key.pem", PASS)
    store = open_keystore(identity, data)
    store.seal("data-key", SECRET)
    store.seal("pseudonym-key", SECRET[::-1])
    files = [p for p in data.rglob("*") if p.is_file()]
    assert len(files) == 3
    for path in files:
        blob = path.read_bytes()
        assert b"PRIVATE KEY-----" not in blob or b"ENCRYPTED" in blob, path
        assert SECRET not in blob and SECRET[::-1] not in blob, path
        assert SECRET.hex().encode() not in blob, path
    assert store.unseal("pseudonym-key") == SECRET[::-1]


def test_factory_reads_the_passphrase_from_an_env_variable(tmp_path: Path) -> None:
    SoftwareKeyStore.generate(tmp_path / "key.pem", PASS)
    identity = _identity(tmp_path, passphrase_env="TANDEM_KEYSTORE_PASSPHRASE")
    store = open_keystore(identity, tmp_path / "data",
                          environ={"TANDEM_KEYSTORE_PASSPHRASE": PASS.decode()})
    assert isinstance(store, SoftwareKeyStore) and store.key_encrypted
    with pytest.raises(KeyStoreError, match="TANDEM_KEYSTORE_PASSPHRASE is not set"):
        open_keystore(identity, tmp_path / "data", environ={})


def test_factory_default_is_the_plain_file_keystore(tmp_path: Path) -> None:
    _plain_key(tmp_path / "key.pem")
    store = open_keystore(_identity(tmp_path), tmp_path / "data", environ={})
    assert isinstance(store, SoftwareKeyStore) and not store.key_encrypted


def test_factory_names_the_known_kinds_for_an_unknown_one(tmp_path: Path) -> None:
    with pytest.raises(KeyStoreError, match=r"unknown key store 'hsm' \(known: file, tpm\)"):
        open_keystore(_identity(tmp_path, keystore="hsm"), tmp_path)


def test_passbox_rejects_garbage_and_tampering() -> None:
    box = passbox.seal(SECRET, PASS, b"n")
    with pytest.raises(passbox.BoxError):
        passbox.open_box(b"\x00junk", PASS, b"n")
    tampered = bytearray(box)
    tampered[-1] ^= 1
    with pytest.raises(passbox.BoxError):
        passbox.open_box(bytes(tampered), PASS, b"n")
    assert passbox.open_box(box, PASS, b"n") == SECRET


def test_identity_section_takes_keystore_fields_from_toml_and_env(tmp_path: Path) -> None:
    path = tmp_path / "gw.toml"
    path.write_text('version = 1\n[gateway]\nid = "gw-01"\n[identity]\ncert = "c.pem"\n'
                    'key = "k.pem"\nca = "ca.pem"\nkeystore = "tpm"\nstate_dir = "ks"\n'
                    'passphrase_file = "pass"\n')
    config = load_config(path, environ={"TANDEM_GW_IDENTITY_TCTI": "swtpm:port=2321"})
    identity = config.identity
    assert (identity.keystore, identity.tcti) == ("tpm", "swtpm:port=2321")
    assert identity.state_dir == tmp_path / "ks"
    assert identity.passphrase_file == tmp_path / "pass"
    default = load_config(path, environ={"TANDEM_GW_IDENTITY_KEYSTORE": "file"}).identity
    assert default.keystore == "file" and default.passphrase_env == ""
