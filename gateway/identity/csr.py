"""Enrolment: a certificate signing request for the key store's key, signed by it.

The key never leaves the key store: `cryptography`'s CSR builder accepts any
`EllipticCurvePrivateKey`, so a thin adapter hands it the store's `sign_der`.
The site CA then signs the CSR (tandem.wire.certprofile.certify_csr).
"""

from __future__ import annotations

from typing import NoReturn

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tandem.gateway.identity.keystore import KeyStore


class KeyStoreSigningKey(ec.EllipticCurvePrivateKey):
    """A key store seen as a private key that can only sign with ECDSA-SHA256."""

    def __init__(self, store: KeyStore) -> None:
        self._store = store

    def sign(self, data: bytes | bytearray | memoryview,
             signature_algorithm: ec.EllipticCurveSignatureAlgorithm) -> bytes:
        """ECDSA-SHA256 through the key store; other algorithms are refused."""
        if not isinstance(signature_algorithm, ec.ECDSA) \
                or not isinstance(signature_algorithm.algorithm, hashes.SHA256):
            raise ValueError("the key store signs ECDSA with SHA-256 only")
        return self._store.sign_der(bytes(data))

    def public_key(self) -> ec.EllipticCurvePublicKey:
        """The key store's public key."""
        return self._store.public_key()

    @property
    def curve(self) -> ec.EllipticCurve:
        """P-256."""
        return ec.SECP256R1()

    @property
    def key_size(self) -> int:
        """256 bits."""
        return 256

    def exchange(self, algorithm: ec.ECDH, peer_public_key: ec.EllipticCurvePublicKey) -> bytes:
        """Refused: the identity key only signs."""
        _refuse("key exchange")

    def private_numbers(self) -> ec.EllipticCurvePrivateNumbers:
        """Refused: the private key is not exportable."""
        _refuse("export")

    def private_bytes(self, encoding: serialization.Encoding,
                      format: serialization.PrivateFormat,
                      encryption_algorithm: serialization.KeySerializationEncryption) -> bytes:
        """Refused: the private key is not exportable."""
        _refuse("export")

    def __copy__(self) -> KeyStoreSigningKey:
        return self

    def __deepcopy__(self, memo: dict[int, object]) -> KeyStoreSigningKey:
        return self


def _refuse(what: str) -> NoReturn:
    raise TypeError(f"{what} is not possible with a key-store key")


def build_csr(store: KeyStore, gateway_id: str) -> bytes:
    """PEM CSR with CN=gateway_id for the store's public key, signed by the store."""
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, gateway_id)])
    csr = x509.CertificateSigningRequestBuilder().subject_name(subject) \
        .sign(KeyStoreSigningKey(store), hashes.SHA256())
    return csr.public_bytes(serialization.Encoding.PEM)
