"""The gateway's side of enrolment: key in the key store, CSR signed by it, certificate back.

`enrol` uses an installer token (POST /enrol/v1/csr); `renew` proves the
current registration by signing the request with the current key (POST
/enrol/v1/renew). Both talk HTTPS to the cloud under the gateway's one trust
rule (gateway/cloudlink/client.py: the site CA unless `uplink.ca` says
otherwise), and save the answer (gateway.enrolled).
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import httpx
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from tandem.gateway.cloudlink.client import CloudEndpoint
from tandem.gateway.config import GatewayConfig
from tandem.gateway.identity import enrolled
from tandem.gateway.identity.csr import build_csr
from tandem.gateway.identity.keystore import (
    GatewayKeyStore,
    KeyStoreError,
    SoftwareKeyStore,
    passphrase_from,
)
from tandem.gateway.identity.kinds import open_keystore, state_dir
from tandem.gateway.identity.tpm_keystore import SEALED_DIR
from tandem.wire.gwrequest import MEDIA_TYPE, sign_request


class EnrolError(Exception):
    """Enrolment that did not succeed; the message says what the cloud or the store said.

    `status`, `reason` and `detail` carry the cloud's HTTP status, error code and
    words (0, "" and "" when the cloud did not answer), so a caller can explain
    them in its own words.
    """

    def __init__(self, message: str, status: int = 0, reason: str = "",
                 detail: str = "") -> None:
        super().__init__(message)
        self.status = status
        self.reason = reason
        self.detail = detail


def enrol(config: GatewayConfig, cloud_url: str, token: str,
          client: httpx.Client | None = None,
          environ: Mapping[str, str] | None = None,
          store: GatewayKeyStore | None = None) -> enrolled.Enrolment:
    """Create (or reuse) the identity key, send its CSR with the token, save the certificate.

    `store` is a key store already open (the running daemon's, left open); by
    default the configured one is opened, or created, and closed afterwards.
    """
    own = store is None
    key = open_or_create_keystore(config, environ) if store is None else store
    try:
        csr = build_csr(key, config.gateway.id).decode()
        with _client(config, cloud_url, client) as http:
            response = http.post("/enrol/v1/csr", json={"csr": csr},
                                 headers={"Authorization": f"Bearer {token}"})
        return _accept(config, key, cloud_url, response)
    finally:
        if own:
            key.close()


def renew(config: GatewayConfig, cloud_url: str | None = None,
          client: httpx.Client | None = None,
          environ: Mapping[str, str] | None = None) -> enrolled.Enrolment:
    """A fresh certificate for the current key, asked for with the current registration."""
    previous = enrolled.load(config.gateway.data_dir)
    url = cloud_url or (previous.cloud if previous else "")
    if not url:
        raise EnrolError("no cloud URL: enrol first or pass --cloud")
    store = open_keystore(config.identity, config.gateway.data_dir, environ)
    try:
        csr = build_csr(store, config.gateway.id).decode()
        body = sign_request("renew", config.gateway.id, {"csr": csr}, time.time_ns() // 10**6,
                            store)
        with _client(config, url, client) as http:
            response = http.post("/enrol/v1/renew", content=body,
                                 headers={"Content-Type": MEDIA_TYPE})
        return _accept(config, store, url, response)
    finally:
        store.close()


def open_or_create_keystore(config: GatewayConfig,
                            environ: Mapping[str, str] | None = None) -> GatewayKeyStore:
    """The configured key store; a file key is created (passphrase-encrypted) if missing."""
    identity = config.identity
    if identity.keystore == "file" and not identity.key.exists():
        passphrase = passphrase_from(identity.passphrase_env, identity.passphrase_file, environ)
        if passphrase is None:
            raise KeyStoreError("creating a file identity key needs a passphrase "
                                "(identity.passphrase_env or identity.passphrase_file)")
        SoftwareKeyStore.generate(identity.key, passphrase,
                                  state_dir(identity, config.gateway.data_dir) / SEALED_DIR)
    return open_keystore(identity, config.gateway.data_dir, environ)


@contextmanager
def _client(config: GatewayConfig, url: str,
            client: httpx.Client | None) -> Iterator[httpx.Client]:
    """The given client (left open), or the cloud client of gateway/cloudlink/client.py."""
    if client is not None:
        yield client
        return
    with CloudEndpoint.of(config, url).client() as own:
        yield own


def _accept(config: GatewayConfig, store: GatewayKeyStore, url: str,
            response: httpx.Response) -> enrolled.Enrolment:
    if response.status_code != 200:
        reason, detail = _error_of(response)
        raise EnrolError(f"cloud refused: {response.status_code} {reason}: {detail}",
                         response.status_code, reason, detail)
    answer: dict[str, Any] = response.json()
    cert = x509.load_pem_x509_certificate(answer["cert"].encode())
    mine = store.public_key().public_bytes(serialization.Encoding.DER,
                                           serialization.PublicFormat.SubjectPublicKeyInfo)
    theirs = cert.public_key().public_bytes(serialization.Encoding.DER,
                                            serialization.PublicFormat.SubjectPublicKeyInfo)
    if mine != theirs or answer.get("gateway") != config.gateway.id:
        raise EnrolError("the certificate returned is not for this gateway's key")
    result = enrolled.Enrolment(
        gateway=config.gateway.id, group=str(answer["group"]), cloud=url,
        serial=str(answer["serial"]), cert_pem=answer["cert"], ca_pem=answer["ca"],
        policy_key_pem=answer.get("policy_key"), data_key_pem=answer.get("data_key"))
    enrolled.save(config.gateway.data_dir, result)
    return result


def _error_of(response: httpx.Response) -> tuple[str, str]:
    """The cloud's (error code, detail); a body that is not the cloud's JSON: ("", its text)."""
    try:
        body = response.json()
    except ValueError:
        return "", response.text[:200]
    if not isinstance(body, dict):
        return "", response.text[:200]
    return str(body.get("error") or ""), str(body.get("detail") or "")
