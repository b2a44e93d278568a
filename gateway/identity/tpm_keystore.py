"""The gateway identity key and sealed secrets in a TPM 2.0 (`hardware_backed = True`).

State directory layout (nothing in it is usable without this very TPM):

    identity.tss2.pem          the identity key as a TSS2 key file (TPM-wrapped)
    sealed/<name>.tpmseal      CBOR {v, pcrs, public, private} of a sealed object

Why key blobs and not a persistent handle (EvictControl): a blob needs no
owner authorisation, uses none of the TPM's scarce NV, cannot collide with
another program's handle choice, is backed up with the data dir, and the
TSS2 file loads in tpm2-openssl (the route to a TPM-backed TLS client
certificate). The cost is re-deriving the storage primary when the key is
loaded (once at start-up) and for each seal/unseal.

Between operations no TPM slot is held: the loaded key is kept as a saved
context and ContextLoad/Sign/Flush runs per signature (~1 ms on swtpm).
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType

import cbor2
from cryptography.hazmat.primitives.asymmetric import ec

from tandem.gateway.identity.keystore import KeyStoreError, SecretMissing
from tandem.gateway.identity.secretfiles import SecretNameError, secret_path, write_private
from tandem.gateway.identity.tpm import (
    MAX_SEALED_BYTES,
    Blob,
    Tpm,
    attributes_of,
    blob_from_pem,
    blob_to_pem,
    public_key_of,
)

log = logging.getLogger(__name__)

KEY_FILE = "identity.tss2.pem"
SEALED_DIR = "sealed"
SEALED_SUFFIX = ".tpmseal"
BLOB_VERSION = 1
NAME_TAG_BYTES = 16
MAX_SECRET_BYTES = MAX_SEALED_BYTES - NAME_TAG_BYTES


class TpmKeyStore:
    """Identity key created inside the TPM, kept as a TPM-wrapped blob in state_dir."""

    hardware_backed = True

    def __init__(self, tcti: str, state_dir: Path, create: bool = True) -> None:
        self.state_dir = state_dir
        self.tpm = Tpm(tcti)
        try:
            self._blob = self._identity_blob(create)
            self._public = public_key_of(self._blob)
            self._context = self.tpm.load_context(self._blob)
        except BaseException:
            self.tpm.close()
            raise

    @property
    def key_path(self) -> Path:
        """The TSS2 key file of the identity key."""
        return self.state_dir / KEY_FILE

    def _identity_blob(self, create: bool) -> Blob:
        try:
            return blob_from_pem(self.key_path.read_bytes())
        except FileNotFoundError:
            if not create:
                raise KeyStoreError(f"no TPM identity key at {self.key_path}") from None
        blob = self.tpm.create_signing_key()
        write_private(self.key_path, blob_to_pem(blob))
        log.info("created a new TPM identity key in %s (enrol it: CSR to the site CA)",
                 self.key_path)
        return blob

    def sign_der(self, data: bytes) -> bytes:
        """ECDSA P-256 / SHA-256 signature by the TPM, DER-encoded."""
        return self.tpm.sign_digest(self._context, hashlib.sha256(data).digest())

    def public_key(self) -> ec.EllipticCurvePublicKey:
        """The public half of the TPM key (from its public area)."""
        return self._public

    def key_attributes(self) -> set[str]:
        """The identity key's TPM object attributes (e.g. fixedtpm, sensitivedataorigin)."""
        return attributes_of(self._blob)

    def seal(self, name: str, secret: bytes, pcrs: Sequence[int] = ()) -> None:
        """Seal secret (1..112 bytes) to this TPM, optionally to the current PCR values."""
        if not 0 < len(secret) <= MAX_SECRET_BYTES:
            raise KeyStoreError(f"a TPM-sealed secret must be 1..{MAX_SECRET_BYTES} bytes")
        blob = self.tpm.seal(_name_tag(name) + secret, pcrs)
        write_private(self._sealed_path(name), cbor2.dumps(
            {"v": BLOB_VERSION, "pcrs": sorted(pcrs), "public": blob.public,
             "private": blob.private}))

    def unseal(self, name: str) -> bytes:
        """Unseal the secret of name; PolicyFailed if its PCRs changed since sealing."""
        path = self._sealed_path(name)
        try:
            record = cbor2.loads(path.read_bytes())
        except FileNotFoundError:
            raise SecretMissing(f"no sealed secret {name!r} in {path.parent}") from None
        except (cbor2.CBORDecodeError, ValueError) as exc:
            raise KeyStoreError(f"sealed secret file {path}: {exc}") from None
        blob, pcrs = _parse_record(record, path)
        data = self.tpm.unseal(blob, pcrs)
        if data[:NAME_TAG_BYTES] != _name_tag(name):
            raise KeyStoreError(f"sealed secret file {path} belongs to another name")
        return data[NAME_TAG_BYTES:]

    def close(self) -> None:
        """Close the TPM connection."""
        self.tpm.close()

    def __enter__(self) -> TpmKeyStore:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def _sealed_path(self, name: str) -> Path:
        try:
            return secret_path(self.state_dir / SEALED_DIR, name, SEALED_SUFFIX)
        except SecretNameError as exc:
            raise KeyStoreError(str(exc)) from None


def _name_tag(name: str) -> bytes:
    """Sealed with the secret so a blob renamed on disk is refused."""
    return hashlib.sha256(b"tandem-sealed-secret:" + name.encode()).digest()[:NAME_TAG_BYTES]


def _parse_record(record: object, path: Path) -> tuple[Blob, list[int]]:
    if not isinstance(record, dict) or record.get("v") != BLOB_VERSION:
        raise KeyStoreError(f"sealed secret file {path}: not a version-{BLOB_VERSION} record")
    public, private, pcrs = record.get("public"), record.get("private"), record.get("pcrs")
    if not isinstance(public, bytes) or not isinstance(private, bytes) \
            or not isinstance(pcrs, list) or not all(isinstance(p, int) for p in pcrs):
        raise KeyStoreError(f"sealed secret file {path}: missing or mistyped fields")
    return Blob(public=public, private=private), pcrs
