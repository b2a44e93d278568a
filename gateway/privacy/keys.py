"""The pseudonymisation key: 32 random bytes sealed in the key store (TPM or passphrase box)."""

from __future__ import annotations

import logging
import os

from tandem.gateway.identity.keystore import SecretMissing, SecretStore

log = logging.getLogger(__name__)

PSEUDONYM_SECRET = "privacy-pseudonym-key"
KEY_BYTES = 32


def pseudonym_key(store: SecretStore) -> bytes:
    """The sealed key, created and sealed on first use; KeyStoreError if sealing is impossible."""
    try:
        return store.unseal(PSEUDONYM_SECRET)
    except SecretMissing:
        pass
    key = os.urandom(KEY_BYTES)
    store.seal(PSEUDONYM_SECRET, key)
    log.info("created and sealed a new pseudonymisation key (%s)", PSEUDONYM_SECRET)
    return key
