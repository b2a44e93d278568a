"""What enrolment left in <data_dir>/enrolment/: certificate, CA, trusted cloud keys, group.

    cert.pem          the gateway certificate for the key store's key
    ca.pem            the CA that issued it
    policy-key.pem    the cloud's policy public key (signed policies must verify with it)
    data-key.pem      the cloud's data public key (fields sealed at the edge are encrypted to it)
    enrolment.json    {"gateway", "group", "cloud", "serial"}

Only public material: the private key stays in the key store.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

ENROL_DIR = "enrolment"
POLICY_KEY = "policy-key.pem"
DATA_KEY = "data-key.pem"


class EnrolmentFilesError(Exception):
    """Enrolment files that are missing or unreadable."""


@dataclass(frozen=True)
class Enrolment:
    """The outcome of an enrolment or renewal."""

    gateway: str
    group: str
    cloud: str
    serial: str
    cert_pem: str
    ca_pem: str
    policy_key_pem: str | None = None
    data_key_pem: str | None = None


def enrolment_dir(data_dir: Path) -> Path:
    """Where the enrolment files live."""
    return data_dir / ENROL_DIR


def save(data_dir: Path, enrolment: Enrolment) -> None:
    """Write every file (atomically each); a key the cloud did not send keeps its old file."""
    directory = enrolment_dir(data_dir)
    directory.mkdir(parents=True, exist_ok=True)
    files = {"cert.pem": enrolment.cert_pem, "ca.pem": enrolment.ca_pem,
             POLICY_KEY: enrolment.policy_key_pem, DATA_KEY: enrolment.data_key_pem,
             "enrolment.json": json.dumps({"gateway": enrolment.gateway,
                                           "group": enrolment.group, "cloud": enrolment.cloud,
                                           "serial": enrolment.serial}, indent=2) + "\n"}
    for name, text in files.items():
        if text is not None:
            tmp = directory / f".{name}.tmp"
            tmp.write_text(text)
            tmp.replace(directory / name)


def load(data_dir: Path) -> Enrolment | None:
    """The saved enrolment, or None if this gateway never enrolled."""
    directory = enrolment_dir(data_dir)
    try:
        meta = json.loads((directory / "enrolment.json").read_text())
        cert, ca = ((directory / n).read_text() for n in ("cert.pem", "ca.pem"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise EnrolmentFilesError(f"{directory}: {exc}") from None
    return Enrolment(meta["gateway"], meta["group"], meta["cloud"], meta["serial"], cert, ca,
                     _optional(directory / POLICY_KEY), _optional(directory / DATA_KEY))


def public_key(path: Path) -> ec.EllipticCurvePublicKey:
    """A P-256 public key from a PEM file."""
    try:
        key = serialization.load_pem_public_key(path.read_bytes())
    except (OSError, ValueError) as exc:
        raise EnrolmentFilesError(f"{path}: {exc}") from None
    if not isinstance(key, ec.EllipticCurvePublicKey):
        raise EnrolmentFilesError(f"{path}: not an EC public key")
    return key


def _optional(path: Path) -> str | None:
    try:
        return path.read_text()
    except FileNotFoundError:
        return None
