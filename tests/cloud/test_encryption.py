"""Encryption at rest: the local key file, AES-GCM sealed columns, key rotation, raw bytes."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import text

from tandem.cloud.access import accounts
from tandem.cloud.config import ConfigError, from_mapping
from tandem.cloud.db import engine as database
from tandem.cloud.keys import kms
from tandem.cloud.keys.encrypted import DecryptionError, key_id_of, seal, unseal

EMAIL = "alice.secret@example.org"
NOTE = "deploy pipeline for plant 7"


def provider_at(tmp_path: Path) -> kms.LocalKeyFile:
    return kms.LocalKeyFile(tmp_path / "keys" / "data.keys")


def test_the_key_file_is_created_private_on_first_use(tmp_path):
    provider = provider_at(tmp_path)
    assert stat.S_IMODE(provider.path.stat().st_mode) == 0o600
    assert stat.S_IMODE(provider.path.parent.stat().st_mode) == 0o700
    assert provider.current_key_id == "k1"
    assert len(provider.data_key("k1")) == 32
    assert provider_at(tmp_path).data_key("k1") == provider.data_key("k1")  # reopened, same key
    assert [p.name for p in provider.path.parent.iterdir()] == ["data.keys"]  # no temp left


def test_a_key_file_others_can_read_or_a_malformed_one_is_refused(tmp_path):
    provider = provider_at(tmp_path)
    os.chmod(provider.path, 0o644)
    config = from_mapping({"data_dir": str(tmp_path),
                           "security": {"key_file": str(provider.path)}})
    with pytest.raises(ConfigError, match="group or others may access the key file"):
        kms.open_provider(config)
    os.chmod(provider.path, 0o600)
    provider.path.write_text("k1 c2hvcnQ=\n")
    with pytest.raises(ConfigError, match=r"data.keys:1: expected"):
        kms.open_provider(config)


def test_an_unknown_provider_is_a_config_error(tmp_path):
    config = from_mapping({"data_dir": str(tmp_path), "security": {"key_provider": "hsm"}})
    with pytest.raises(ConfigError, match=r"security\.key_provider: must be one of local"):
        kms.open_provider(config)


@settings(max_examples=50, deadline=None)
@given(st.text(max_size=200))
def test_seal_then_unseal_gives_back_any_text(tmp_path_factory, plaintext):
    provider = provider_at(tmp_path_factory.getbasetemp() / "roundtrip")
    sealed = seal(provider, "users.email", plaintext)
    assert sealed.startswith("k1:")
    assert unseal(provider, "users.email", sealed) == plaintext


def test_a_value_is_bound_to_its_column_and_to_its_bytes(tmp_path):
    provider = provider_at(tmp_path)
    sealed = seal(provider, "users.email", EMAIL)
    with pytest.raises(DecryptionError, match=r"api_tokens\.note"):
        unseal(provider, "api_tokens.note", sealed)
    key_id, _, body = sealed.partition(":")
    flipped = body[:-2] + ("A" if body[-2] != "A" else "B") + body[-1]
    with pytest.raises(DecryptionError):
        unseal(provider, "users.email", f"{key_id}:{flipped}")
    with pytest.raises(kms.KeyUnavailable, match="no key called 'k9'"):
        unseal(provider, "users.email", f"k9:{body}")


def test_rotation_encrypts_new_values_with_the_new_key_and_still_reads_old_ones(tmp_path):
    provider = provider_at(tmp_path)
    old = seal(provider, "users.email", EMAIL)
    reader = provider_at(tmp_path)  # e.g. the running service, opened before the rotation
    assert provider.rotate() == "k2"
    new = seal(provider, "users.email", EMAIL)
    assert (key_id_of(old), key_id_of(new)) == ("k1", "k2")
    assert unseal(reader, "users.email", new) == unseal(reader, "users.email", old) == EMAIL
    assert reader.current_key_id == "k2"  # it re-read the file for the unknown key


@pytest.mark.storages("sqlite", "postgresql")
def test_raw_database_bytes_do_not_contain_the_plaintext(app, kit):
    with database.sessions(app).begin() as session:
        accounts.add_user(session, "alice", "viewer", None, kit.now_ms(), email=EMAIL)
        accounts.create_token(session, "alice", "ci", kit.now_ms(), note=NOTE)
    with database.engine(app).connect() as conn:
        raw = [conn.execute(text("SELECT email FROM users WHERE name = 'alice'")).scalar_one(),
               conn.execute(text("SELECT note FROM api_tokens")).scalar_one()]
    assert all(value.startswith("k1:") for value in raw)
    assert EMAIL not in raw[0] and NOTE not in raw[1]
    url = app.config["TANDEM"].database.url
    if url.startswith("sqlite:///"):
        path = Path(url.removeprefix("sqlite:///"))
        files = b"".join(p.read_bytes() for p in path.parent.glob(path.name + "*"))
        assert b"alice" in files  # the user's name is not secret; the email is
        assert EMAIL.encode() not in files and NOTE.encode() not in files
    with database.sessions(app)() as session:
        user = accounts.find_user(session, "alice")
        assert user is not None and user.email == EMAIL
        assert [t.note for _, t in accounts.list_tokens(session, "alice")] == [NOTE]
