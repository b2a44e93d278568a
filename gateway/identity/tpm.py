"""A TPM 2.0 reached through a TCTI string: the only module that speaks tpm2-pytss.

Keys and sealed objects live under the owner-hierarchy *storage primary*,
re-derived on demand from the TPM's seed with the standard ECC P-256 parent
template of the TSS2 key-file format (so tpm2-openssl can load our key files).
Every transient object is flushed in a `finally`: a TPM without a resource
manager has only three object slots, and a leaked one outlives this process.

Blobs (TPM2B_PUBLIC + TPM2B_PRIVATE) are wrapped by the TPM: their private
part is encrypted under the storage primary and useless on another TPM.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

try:
    from tpm2_pytss import ESAPI, TSS2_Exception
    from tpm2_pytss.constants import (
        ESYS_TR,
        TPM2_ALG,
        TPM2_CAP,
        TPM2_ECC,
        TPM2_HT,
        TPM2_RC,
        TPM2_RH,
        TPM2_SE,
        TPM2_ST,
        TPMA_OBJECT,
    )
    from tpm2_pytss.tsskey import TSSPrivKey
    from tpm2_pytss.types import (
        TPM2B_PRIVATE,
        TPM2B_PUBLIC,
        TPM2B_SENSITIVE_CREATE,
        TPM2B_SENSITIVE_DATA,
        TPML_DIGEST_VALUES,
        TPML_PCR_SELECTION,
        TPMS_ECC_PARMS,
        TPMS_KEYEDHASH_PARMS,
        TPMS_SCHEME_HASH,
        TPMS_SENSITIVE_CREATE,
        TPMT_ECC_SCHEME,
        TPMT_HA,
        TPMT_KDF_SCHEME,
        TPMT_KEYEDHASH_SCHEME,
        TPMT_PUBLIC,
        TPMT_SIG_SCHEME,
        TPMT_SYM_DEF,
        TPMT_SYM_DEF_OBJECT,
        TPMT_TK_HASHCHECK,
        TPMU_ASYM_SCHEME,
        TPMU_HA,
        TPMU_PUBLIC_PARMS,
        TPMU_SIG_SCHEME,
        TPMU_SYM_KEY_BITS,
        TPMU_SYM_MODE,
    )
except ImportError as exc:  # optional dependency: the `tpm` extra
    if exc.name is None or not exc.name.startswith("tpm2_pytss"):
        raise
    ESAPI = None

from tandem.gateway.identity.keystore import KeyStoreError

MAX_SEALED_BYTES = 128  # MAX_SYM_DATA of the TPM 2.0 spec
PCR_BANK = "sha256"


class TpmError(KeyStoreError):
    """The TPM refused or failed an operation."""


class PolicyFailed(TpmError):
    """A policy-bound object was refused: the PCR values changed since sealing."""


@dataclass(frozen=True, slots=True)
class Blob:
    """A TPM-wrapped object: marshalled TPM2B_PUBLIC and TPM2B_PRIVATE."""

    public: bytes
    private: bytes


def _storage_primary_template() -> Any:
    """ECC P-256 restricted decrypt key: the TSS2 key-file standard parent."""
    return TPMT_PUBLIC(
        type=TPM2_ALG.ECC, nameAlg=TPM2_ALG.SHA256,
        objectAttributes=TPMA_OBJECT.USERWITHAUTH | TPMA_OBJECT.RESTRICTED
        | TPMA_OBJECT.DECRYPT | TPMA_OBJECT.NODA | TPMA_OBJECT.FIXEDTPM
        | TPMA_OBJECT.FIXEDPARENT | TPMA_OBJECT.SENSITIVEDATAORIGIN,
        parameters=TPMU_PUBLIC_PARMS(eccDetail=TPMS_ECC_PARMS(
            symmetric=TPMT_SYM_DEF_OBJECT(algorithm=TPM2_ALG.AES,
                                          keyBits=TPMU_SYM_KEY_BITS(aes=128),
                                          mode=TPMU_SYM_MODE(aes=TPM2_ALG.CFB)),
            scheme=TPMT_ECC_SCHEME(scheme=TPM2_ALG.NULL), curveID=TPM2_ECC.NIST_P256,
            kdf=TPMT_KDF_SCHEME(scheme=TPM2_ALG.NULL))))


def _signing_key_template() -> Any:
    """ECC P-256 key generated in the TPM, bound to it, ECDSA-SHA256 only, no decrypt.

    noDA: the key has an empty auth value, so dictionary-attack lockout would
    protect nothing and could only lock the gateway out of its own key.
    """
    return TPMT_PUBLIC(
        type=TPM2_ALG.ECC, nameAlg=TPM2_ALG.SHA256,
        objectAttributes=TPMA_OBJECT.FIXEDTPM | TPMA_OBJECT.FIXEDPARENT
        | TPMA_OBJECT.SENSITIVEDATAORIGIN | TPMA_OBJECT.USERWITHAUTH
        | TPMA_OBJECT.SIGN_ENCRYPT | TPMA_OBJECT.NODA,
        parameters=TPMU_PUBLIC_PARMS(eccDetail=TPMS_ECC_PARMS(
            symmetric=TPMT_SYM_DEF_OBJECT(algorithm=TPM2_ALG.NULL),
            scheme=TPMT_ECC_SCHEME(scheme=TPM2_ALG.ECDSA, details=TPMU_ASYM_SCHEME(
                ecdsa=TPMS_SCHEME_HASH(hashAlg=TPM2_ALG.SHA256))),
            curveID=TPM2_ECC.NIST_P256, kdf=TPMT_KDF_SCHEME(scheme=TPM2_ALG.NULL))))


def _sealed_template(policy: bytes) -> Any:
    """Keyed-hash sealed data object; with a policy, only the policy can unseal it."""
    attributes = TPMA_OBJECT.FIXEDTPM | TPMA_OBJECT.FIXEDPARENT | TPMA_OBJECT.NODA
    if not policy:
        attributes |= TPMA_OBJECT.USERWITHAUTH
    return TPMT_PUBLIC(
        type=TPM2_ALG.KEYEDHASH, nameAlg=TPM2_ALG.SHA256, objectAttributes=attributes,
        authPolicy=policy,
        parameters=TPMU_PUBLIC_PARMS(keyedHashDetail=TPMS_KEYEDHASH_PARMS(
            scheme=TPMT_KEYEDHASH_SCHEME(scheme=TPM2_ALG.NULL))))


def public_key_of(blob: Blob) -> ec.EllipticCurvePublicKey:
    """The ECC P-256 public key in a blob's public area (no TPM needed)."""
    public, _ = TPM2B_PUBLIC.unmarshal(blob.public)
    point = public.publicArea.unique.ecc
    return ec.EllipticCurvePublicNumbers(int.from_bytes(bytes(point.x), "big"),
                                         int.from_bytes(bytes(point.y), "big"),
                                         ec.SECP256R1()).public_key()


def blob_to_pem(blob: Blob) -> bytes:
    """The blob as a `TSS2 PRIVATE KEY` PEM (the tpm2-openssl / tpm2-tss-engine key file)."""
    private, public = _unmarshal(blob)
    return bytes(TSSPrivKey(private, public, empty_auth=True, parent=TPM2_RH.OWNER).to_pem())


def blob_from_pem(pem: bytes) -> Blob:
    """Parse a `TSS2 PRIVATE KEY` PEM made by blob_to_pem (owner parent, empty auth)."""
    try:
        key = TSSPrivKey.from_pem(pem)
    except (ValueError, TypeError) as exc:
        raise TpmError(f"not a TSS2 private key file: {exc}") from None
    if key.parent != TPM2_RH.OWNER or not key.empty_auth:
        raise TpmError("TSS2 key file must have the owner-hierarchy parent and empty auth")
    return Blob(public=key.public.marshal(), private=key.private.marshal())


def attributes_of(blob: Blob) -> set[str]:
    """Names of the object attributes in a blob's public area, e.g. {"fixedtpm", "sign"}."""
    public, _ = TPM2B_PUBLIC.unmarshal(blob.public)
    return set(str(TPMA_OBJECT(public.publicArea.objectAttributes)).split("|"))


class Tpm:
    """One ESAPI connection; all calls serialised by a lock (ESAPI is not thread-safe)."""

    def __init__(self, tcti: str) -> None:
        if ESAPI is None:
            raise TpmError("tpm2-pytss is not installed (pip install 'tandem-iot[tpm]')")
        self.tcti = tcti
        self._lock = threading.Lock()
        try:
            self._esapi = ESAPI(tcti)
        except TSS2_Exception as exc:
            raise TpmError(f"cannot open TPM at {tcti!r}: {exc}") from None
        except RuntimeError as exc:
            raise TpmError(f"bad TCTI string {tcti!r}: {exc}") from None

    def close(self) -> None:
        """Close the TCTI connection."""
        with self._lock:
            self._esapi.close()

    def create_signing_key(self) -> Blob:
        """Generate a non-exportable ECC P-256 signing key inside the TPM."""
        return self._create(_signing_key_template(), TPM2B_SENSITIVE_CREATE())

    def load_context(self, blob: Blob) -> Any:
        """Load blob under the storage primary; return its saved context (no slot held)."""
        with self._guard("load key"), self._primary() as primary:
            handle = self._esapi.load(primary, *_unmarshal(blob))
            try:
                return self._esapi.context_save(handle)
            finally:
                self._esapi.flush_context(handle)

    def sign_digest(self, context: Any, digest: bytes) -> bytes:
        """ECDSA-sign a SHA-256 digest with the key in a saved context; DER signature."""
        scheme = TPMT_SIG_SCHEME(scheme=TPM2_ALG.ECDSA, details=TPMU_SIG_SCHEME(
            ecdsa=TPMS_SCHEME_HASH(hashAlg=TPM2_ALG.SHA256)))
        ticket = TPMT_TK_HASHCHECK(tag=TPM2_ST.HASHCHECK, hierarchy=TPM2_RH.NULL)
        with self._guard("sign"):
            handle = self._esapi.context_load(context)
            try:
                signature = self._esapi.sign(handle, digest, scheme, ticket)
            finally:
                self._esapi.flush_context(handle)
        ecdsa = signature.signature.ecdsa
        return encode_dss_signature(int.from_bytes(bytes(ecdsa.signatureR), "big"),
                                    int.from_bytes(bytes(ecdsa.signatureS), "big"))

    def seal(self, secret: bytes, pcrs: Sequence[int] = ()) -> Blob:
        """Seal secret to this TPM, optionally to the current values of pcrs."""
        if not 0 < len(secret) <= MAX_SEALED_BYTES:
            raise TpmError(f"a sealed secret must be 1..{MAX_SEALED_BYTES} bytes")
        with self._guard("seal"):
            policy = self._pcr_policy_digest(pcrs) if pcrs else b""
        sensitive = TPM2B_SENSITIVE_CREATE(sensitive=TPMS_SENSITIVE_CREATE(
            data=TPM2B_SENSITIVE_DATA(secret)))
        return self._create(_sealed_template(policy), sensitive)

    def unseal(self, blob: Blob, pcrs: Sequence[int] = ()) -> bytes:
        """Unseal blob; raises PolicyFailed when bound PCRs no longer match."""
        with self._guard("unseal"), self._primary() as primary:
            handle = self._esapi.load(primary, *_unmarshal(blob))
            try:
                if not pcrs:
                    return bytes(self._esapi.unseal(handle))
                with self._session(TPM2_SE.POLICY) as session:
                    self._esapi.policy_pcr(session, b"", _selection(pcrs))
                    return bytes(self._esapi.unseal(handle, session1=session))
            finally:
                self._esapi.flush_context(handle)

    def extend_pcr(self, index: int, data: bytes) -> None:
        """Extend PCR index of the SHA-256 bank with SHA-256(data) (a measurement)."""
        digest = TPMT_HA(hashAlg=TPM2_ALG.SHA256,
                         digest=TPMU_HA(sha256=hashlib.sha256(data).digest()))
        with self._guard("extend PCR"):
            self._esapi.pcr_extend(ESYS_TR.parse(f"pcr{index}"), TPML_DIGEST_VALUES([digest]))

    def loaded_handles(self) -> list[int]:
        """Transient objects and sessions loaded in the TPM now (leaks show up here)."""
        found: list[int] = []
        with self._guard("list handles"):
            for kind in (TPM2_HT.TRANSIENT, TPM2_HT.LOADED_SESSION):
                _, data = self._esapi.get_capability(TPM2_CAP.HANDLES, kind << 24, 64)
                found.extend(int(h) for h in data.data.handles)
        return found

    def _create(self, template: Any, sensitive: Any) -> Blob:
        with self._guard("create object"), self._primary() as primary:
            private, public, _, _, _ = self._esapi.create(primary, sensitive,
                                                          TPM2B_PUBLIC(publicArea=template))
        return Blob(public=public.marshal(), private=private.marshal())

    def _pcr_policy_digest(self, pcrs: Sequence[int]) -> bytes:
        """PolicyPCR digest over the current PCR values, from a trial session."""
        with self._session(TPM2_SE.TRIAL) as session:
            self._esapi.policy_pcr(session, b"", _selection(pcrs))
            return bytes(self._esapi.policy_get_digest(session))

    @contextmanager
    def _primary(self) -> Iterator[Any]:
        handle, _, _, _, _ = self._esapi.create_primary(
            TPM2B_SENSITIVE_CREATE(), TPM2B_PUBLIC(publicArea=_storage_primary_template()),
            ESYS_TR.OWNER)
        try:
            yield handle
        finally:
            self._esapi.flush_context(handle)

    @contextmanager
    def _session(self, kind: Any) -> Iterator[Any]:
        session = self._esapi.start_auth_session(
            ESYS_TR.NONE, ESYS_TR.NONE, kind, TPMT_SYM_DEF(algorithm=TPM2_ALG.NULL),
            TPM2_ALG.SHA256)
        try:
            yield session
        finally:
            self._esapi.flush_context(session)

    @contextmanager
    def _guard(self, what: str) -> Iterator[None]:
        """Hold the lock; turn TSS errors into TpmError naming the operation."""
        with self._lock:
            try:
                yield
            except TSS2_Exception as exc:
                raise _translate(what, exc) from None


def _translate(what: str, exc: Any) -> TpmError:
    if exc.error == TPM2_RC.POLICY_FAIL:
        return PolicyFailed(f"{what}: PCR policy not satisfied (PCR values changed): {exc}")
    if exc.error == TPM2_RC.OBJECT_MEMORY:
        return TpmError(f"{what}: TPM out of object slots (transient objects leaked by a "
                        "crashed process? use device:/dev/tpmrm0 or restart the TPM)")
    return TpmError(f"{what}: {exc}")


def _selection(pcrs: Sequence[int]) -> Any:
    if not all(0 <= p <= 23 for p in pcrs):
        raise TpmError(f"PCR indices must be 0..23, got {list(pcrs)}")
    return TPML_PCR_SELECTION.parse(f"{PCR_BANK}:" + ",".join(str(p) for p in sorted(pcrs)))


def _unmarshal(blob: Blob) -> tuple[Any, Any]:
    private, _ = TPM2B_PRIVATE.unmarshal(blob.private)
    public, _ = TPM2B_PUBLIC.unmarshal(blob.public)
    return private, public
