"""Open the key store that `[identity] keystore` names: "file" (default) or "tpm".

The kinds are a dict of classes, each built from the identity section by its
`from_config`; adding a kind (a PKCS#11 token, say) is one class and one entry.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Protocol

from tandem.gateway.config import IdentitySection
from tandem.gateway.identity.keystore import (
    GatewayKeyStore,
    KeyStoreError,
    SoftwareKeyStore,
    passphrase_from,
)
from tandem.gateway.identity.tpm_keystore import SEALED_DIR, TpmKeyStore

STATE_SUBDIR = "keystore"


class FileKeyStore(SoftwareKeyStore):
    """SoftwareKeyStore configured from [identity]."""

    @classmethod
    def from_config(cls, identity: IdentitySection, data_dir: Path,
                    environ: Mapping[str, str] | None = None) -> GatewayKeyStore:
        """Key from identity.key; passphrase (if any) also seals secrets in state_dir."""
        passphrase = passphrase_from(identity.passphrase_env, identity.passphrase_file, environ)
        return cls(identity.key, passphrase, state_dir(identity, data_dir) / SEALED_DIR)


class ConfiguredTpmKeyStore(TpmKeyStore):
    """TpmKeyStore configured from [identity]."""

    @classmethod
    def from_config(cls, identity: IdentitySection, data_dir: Path,
                    environ: Mapping[str, str] | None = None) -> GatewayKeyStore:
        """Key blob and sealed secrets in state_dir, TPM at identity.tcti."""
        return cls(identity.tcti, state_dir(identity, data_dir))


class KeyStoreKind(Protocol):
    """A key store class that can be built from the [identity] section."""

    @classmethod
    def from_config(cls, identity: IdentitySection, data_dir: Path,
                    environ: Mapping[str, str] | None = None) -> GatewayKeyStore:
        """Open the store described by identity."""
        ...


KEYSTORES: dict[str, type[KeyStoreKind]] = {
    "file": FileKeyStore,
    "tpm": ConfiguredTpmKeyStore,
}


def open_keystore(identity: IdentitySection, data_dir: Path,
                  environ: Mapping[str, str] | None = None) -> GatewayKeyStore:
    """The key store identity.keystore names; KeyStoreError for an unknown kind."""
    kind = KEYSTORES.get(identity.keystore)
    if kind is None:
        raise KeyStoreError(f"identity.keystore: unknown key store {identity.keystore!r} "
                            f"(known: {', '.join(sorted(KEYSTORES))})")
    return kind.from_config(identity, data_dir, environ)


def state_dir(identity: IdentitySection, data_dir: Path) -> Path:
    """Where the key store keeps its files: identity.state_dir or <data_dir>/keystore."""
    return identity.state_dir or data_dir / STATE_SUBDIR
