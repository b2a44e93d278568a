"""The enrolment wizard's steps: address, cloud reachable and trusted, clocks, key, certificate.

Each step ends in a `Step` whose text an installer understands; the first
failed step ends the run. The token is sent last, after the cloud answered
over a trusted connection and the clocks agree, so a mistake found early
does not use the one-time token up. The enrolment itself is the CLI's
(gateway/identity/enrolment.py), run with the daemon's open key store.
Blocking (HTTP, key store): the page runs it in a thread.
"""

from __future__ import annotations

import email.utils
import ssl
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import httpx
from cryptography.hazmat.primitives import hashes, serialization

from tandem.gateway.cloudlink.client import CloudEndpoint
from tandem.gateway.config import GatewayConfig
from tandem.gateway.identity import enrolled
from tandem.gateway.identity import enrolment as enrol_client
from tandem.gateway.identity.keystore import GatewayKeyStore, KeyStoreError

MAX_SKEW_S = 300  # the cloud's default request_skew_s and max_clock_skew_s
_EXPIRED, _NOT_YET_VALID = 10, 9  # OpenSSL X509_V_ERR_CERT_HAS_EXPIRED, _NOT_YET_VALID
_NAME_MISMATCH = (62, 64)  # X509_V_ERR_HOSTNAME_MISMATCH, X509_V_ERR_IP_ADDRESS_MISMATCH
ClientFactory = Callable[[str], httpx.Client]


@dataclass(frozen=True)
class Step:
    """One step's outcome, in words for the page."""

    name: str
    ok: bool
    text: str


@dataclass
class Outcome:
    """The steps run, in order; `enrolment` is set when the last one succeeded."""

    steps: list[Step] = field(default_factory=list)
    enrolment: enrolled.Enrolment | None = None

    @property
    def ok(self) -> bool:
        """True when the gateway is enrolled."""
        return self.enrolment is not None

    def add(self, name: str, ok: bool, text: str) -> bool:
        """Record a step; returns ok so a run can stop at the first failure."""
        self.steps.append(Step(name, ok, text))
        return ok


class StepFailed(Exception):
    """A step that failed, with the words to show."""


def run(config: GatewayConfig, url: str, token: str, store: GatewayKeyStore,
        clients: ClientFactory | None = None,
        clock: Callable[[], float] = time.time) -> Outcome:
    """Enrol this gateway with the cloud at url using token, one explained step at a time."""
    outcome = Outcome()
    url = url.strip().rstrip("/")
    token = token.strip()
    steps: list[tuple[str, Callable[[], str]]] = [
        ("address", lambda: check_address(url, token)),
        ("cloud", lambda: _probe(config, url, clients, clock)),
        ("key", lambda: describe_key(config, store)),
        ("certificate", lambda: _enrol(config, url, token, store, clients, outcome)),
    ]
    for name, step in steps:
        try:
            text = step()
        except StepFailed as exc:
            outcome.add(name, False, str(exc))
            outcome.enrolment = None
            break
        outcome.add(name, True, text)
    return outcome


def check_address(url: str, token: str) -> str:
    """The form's fields are plausible: an http(s) URL with a host, and a token."""
    parts = urlsplit(url)
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise StepFailed(f"The cloud address {url!r} is not a web address: write it like "
                         "https://cloud.example.com")
    if not token:
        raise StepFailed("Enter the one-time enrolment token the operator gave you.")
    return f"Cloud address {url}."


def _probe(config: GatewayConfig, url: str, clients: ClientFactory | None,
           clock: Callable[[], float]) -> str:
    """GET /healthz: the cloud answers over a trusted connection, and its clock agrees."""
    try:
        with _client(config, url, clients) as http:
            response = http.get("/healthz")
    except httpx.HTTPError as exc:
        raise StepFailed(explain_transport(exc, url)) from None
    if response.status_code == 503:
        raise StepFailed("The cloud answered but is not ready (its database or time-series "
                         "store is down): try again later; the token was not used.")
    if response.status_code != 200:
        raise StepFailed(f"{url} answers, but not as a Tandem cloud (GET /healthz: "
                         f"{response.status_code}). Check the address.")
    check_clock(response.headers.get("Date"), clock())
    trusted = "" if url.startswith("http://") else " over a trusted connection"
    return f"The cloud answered{trusted}; the clocks agree."


def check_clock(date_header: str | None, now_s: float) -> None:
    """StepFailed when the cloud's Date differs from this gateway's clock by more than allowed."""
    if not date_header:
        return  # nothing to compare with: the certificate checks still catch a gross error
    try:
        cloud_s = email.utils.parsedate_to_datetime(date_header).timestamp()
    except (TypeError, ValueError):
        return
    skew = now_s - cloud_s
    if abs(skew) > MAX_SKEW_S:
        way = "ahead of" if skew > 0 else "behind"
        raise StepFailed(f"Clock skew: this gateway's clock is {_duration(abs(skew))} {way} "
                         "the cloud's. Set the gateway's date and time (or its NTP server) "
                         "and try again; the token was not used.")


def describe_key(config: GatewayConfig, store: GatewayKeyStore) -> str:
    """Which key store holds the identity key, and the key's fingerprint."""
    try:
        der = store.public_key().public_bytes(serialization.Encoding.DER,
                                              serialization.PublicFormat.SubjectPublicKeyInfo)
    except (KeyStoreError, OSError) as exc:
        raise StepFailed(f"The key store does not answer: {exc}") from None
    digest = hashes.Hash(hashes.SHA256())
    digest.update(der)
    where = "the TPM" if store.hardware_backed else "an encrypted file" \
        if config.identity.passphrase_env or config.identity.passphrase_file else "a file"
    return f"Signing request made with the key in {where} (SHA-256 " \
           f"{digest.finalize().hex()[:16]}...)."


def _enrol(config: GatewayConfig, url: str, token: str, store: GatewayKeyStore,
           clients: ClientFactory | None, outcome: Outcome) -> str:
    try:
        with _client(config, url, clients) as http:
            result = enrol_client.enrol(config, url, token, client=http, store=store)
    except enrol_client.EnrolError as exc:
        raise StepFailed(explain_refusal(exc)) from None
    except httpx.HTTPError as exc:
        raise StepFailed(explain_transport(exc, url)) from None
    except OSError as exc:
        raise StepFailed(f"The certificate could not be saved: {exc}") from None
    outcome.enrolment = result
    return f"Enrolled in group {result.group!r}: certificate serial {result.serial} saved."


def explain_refusal(exc: enrol_client.EnrolError) -> str:
    """The cloud's refusal of the token or the request, in an installer's words."""
    if exc.reason == "invalid_token" or exc.status == 401:  # also a token of the wrong form
        return ("Wrong or expired token: the cloud does not know this token, or it was "
                "already used or has expired. Ask the operator for a new one-time token.")
    if exc.reason == "bad_csr" and "this token enrols" in exc.detail:
        return (f"This token is for another gateway ({exc.detail}): ask the operator for a "
                "token made for this gateway.")
    if exc.reason in ("revoked_gateway", "revoked_key"):
        return ("This gateway was revoked in the cloud: an administrator must re-admit it "
                f"before it can enrol ({exc.reason}).")
    if exc.status == 0:
        return f"Enrolment failed: {exc}"
    return (f"The cloud refused the enrolment ({exc.status} {exc.reason or 'error'}): "
            f"{exc.detail or exc}")


def explain_transport(exc: httpx.HTTPError, url: str) -> str:
    """A connection failure, in an installer's words (unreachable, not trusted, clock)."""
    verify = _cause(exc, ssl.SSLCertVerificationError)
    if verify is not None:
        code = verify.verify_code
        if code in (_EXPIRED, _NOT_YET_VALID):
            return ("Clock skew or an expired certificate: the cloud's certificate is "
                    f"{'expired' if code == _EXPIRED else 'not valid yet'} by this gateway's "
                    "clock. Check the gateway's date and time, then try again.")
        if code in _NAME_MISMATCH:
            return (f"Certificate not trusted: the cloud's certificate is not made out to "
                    f"{urlsplit(url).hostname}. Check the address.")
        return ("Certificate not trusted: the cloud's certificate is not signed by the "
                "site CA this gateway trusts (identity.ca or uplink.ca). Check the address, "
                f"or install the right CA ({verify.verify_message}).")
    if isinstance(exc, httpx.TimeoutException):
        return (f"Cloud unreachable: no answer from {url} in time. Check the network, the "
                "firewall and the address.")
    return (f"Cloud unreachable: could not connect to {url} ({_root(exc)}). Check the "
            "address, the network cable or Wi-Fi, and the firewall.")


@contextmanager
def _client(config: GatewayConfig, url: str,
            clients: ClientFactory | None) -> Iterator[httpx.Client]:
    """A client of the cloud at url under the gateway's trust rule (tests inject one)."""
    with (clients(url) if clients else CloudEndpoint.of(config, url).client()) as http:
        yield http


def _cause(exc: BaseException,
           kind: type[ssl.SSLCertVerificationError]) -> ssl.SSLCertVerificationError | None:
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, kind):
            return seen
        seen = seen.__cause__ or seen.__context__
    return None


def _root(exc: BaseException) -> str:
    while exc.__cause__ or exc.__context__:
        exc = exc.__cause__ or exc.__context__  # type: ignore[assignment]
    return str(exc) or type(exc).__name__


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"
