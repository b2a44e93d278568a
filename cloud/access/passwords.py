"""Password hashing: argon2id (RFC 9106 low-memory profile: 64 MiB, 3 passes, 4 lanes)."""

from __future__ import annotations

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

MIN_LENGTH = 12
MAX_LENGTH = 1024  # hashing is deliberately slow; refuse megabyte "passwords" before it

_HASHER = PasswordHasher()  # argon2-cffi's defaults are RFC 9106's second recommendation
# Verified against when the user does not exist, so both cases take the same time.
_DUMMY_HASH = _HASHER.hash("tandem-no-such-user-placeholder")


class WeakPassword(ValueError):
    """A password refused by the length policy."""


def check_policy(password: str) -> None:
    """Raise WeakPassword unless password is MIN_LENGTH..MAX_LENGTH characters."""
    if not MIN_LENGTH <= len(password) <= MAX_LENGTH:
        raise WeakPassword(f"passwords must be {MIN_LENGTH}..{MAX_LENGTH} characters")


def hash_password(password: str) -> str:
    """The argon2id hash of password, in PHC string form (salt and parameters included)."""
    check_policy(password)
    return _HASHER.hash(password)


def verify_password(stored: str | None, password: str) -> bool:
    """True when password matches stored; a missing hash costs the same time and fails."""
    if len(password) > MAX_LENGTH:
        return False
    try:
        return _HASHER.verify(stored or _DUMMY_HASH, password) and stored is not None
    except (VerificationError, InvalidHashError):
        return False


def needs_rehash(stored: str) -> bool:
    """True when stored was hashed with weaker parameters than today's."""
    return _HASHER.check_needs_rehash(stored)
