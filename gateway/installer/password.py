"""The installer password: scrypt-hashed in <data_dir>/installer/password (0600), or a code.

Without a password file the daemon makes a one-time code at start and logs it
once; it opens one session and is then spent (set a password with
`tandem-gateway installer-password`).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

PASSWORD_FILE = Path("installer") / "password"
MIN_LENGTH = 10
# scrypt at n=2^14, r=8: ~16 MB and ~50 ms per check, the RFC 7914 interactive setting.
SCRYPT_N, SCRYPT_R, SCRYPT_P = 1 << 14, 8, 1


class PasswordError(ValueError):
    """A password that cannot be set (too short) or a file that cannot be read."""


@dataclass(frozen=True, slots=True)
class PasswordHash:
    """scrypt parameters, salt and digest of one password."""

    salt: bytes
    digest: bytes
    n: int = SCRYPT_N
    r: int = SCRYPT_R
    p: int = SCRYPT_P

    @classmethod
    def of(cls, password: str) -> PasswordHash:
        """Hash a password with a fresh salt."""
        salt = secrets.token_bytes(16)
        return cls(salt, _scrypt(password, salt, SCRYPT_N, SCRYPT_R, SCRYPT_P))

    def matches(self, password: str) -> bool:
        """Constant-time check of a candidate password."""
        return hmac.compare_digest(_scrypt(password, self.salt, self.n, self.r, self.p),
                                   self.digest)

    def to_json(self) -> str:
        """The file form."""
        return json.dumps({"scheme": "scrypt", "n": self.n, "r": self.r, "p": self.p,
                           "salt": self.salt.hex(), "hash": self.digest.hex()}) + "\n"

    @classmethod
    def from_json(cls, text: str) -> PasswordHash:
        """Parse the file form; PasswordError when it is not one."""
        try:
            d = json.loads(text)
            if d["scheme"] != "scrypt":
                raise ValueError(f"unknown scheme {d['scheme']!r}")
            return cls(bytes.fromhex(d["salt"]), bytes.fromhex(d["hash"]),
                       int(d["n"]), int(d["r"]), int(d["p"]))
        except (ValueError, KeyError, TypeError) as exc:
            raise PasswordError(f"not a password file: {exc}") from None


def _scrypt(password: str, salt: bytes, n: int, r: int, p: int) -> bytes:
    return hashlib.scrypt(password.encode(), salt=salt, n=n, r=r, p=p, maxmem=64 << 20, dklen=32)


def set_password(data_dir: Path, password: str) -> Path:
    """Hash and store the installer password (atomically, mode 0600); returns the file."""
    if len(password) < MIN_LENGTH:
        raise PasswordError(f"the password needs at least {MIN_LENGTH} characters")
    path = data_dir / PASSWORD_FILE
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_name(".password.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(PasswordHash.of(password).to_json())
        out.flush()
        os.fsync(out.fileno())
    os.chmod(tmp, 0o600)  # an existing tmp file kept its old mode
    tmp.replace(path)
    return path


class Credentials:
    """Checks a login: the stored password, else the one-time code of this run."""

    def __init__(self, data_dir: Path) -> None:
        self._path = data_dir / PASSWORD_FILE
        self._code: str | None = None

    def announce(self) -> None:
        """At start: without a password, make a one-time code and log it once."""
        if self._path.exists():
            return
        self._code = f"{secrets.randbelow(10**8):08d}"
        log.warning("installer page: no password set (tandem-gateway installer-password); "
                    "one-time login code: %s", self._code)

    def check(self, password: str) -> bool:
        """True for the stored password, or for the unspent one-time code (which it spends)."""
        try:
            text = self._path.read_text()
        except FileNotFoundError:
            return self._spend_code(password)
        except OSError as exc:
            log.warning("installer password file unreadable: %s", exc)
            return False
        try:
            return PasswordHash.from_json(text).matches(password)
        except PasswordError as exc:
            log.warning("%s: %s", self._path, exc)
            return False

    def _spend_code(self, password: str) -> bool:
        code = self._code
        if code is None or not hmac.compare_digest(code.encode(), password.encode()):
            return False
        self._code = None
        log.warning("installer page: the one-time code was used; set a password next")
        return True
