"""Where key stores keep their files: names checked, written atomically with mode 0600."""

from __future__ import annotations

import os
from pathlib import Path

NAME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.")


class SecretNameError(ValueError):
    """A secret name that could escape its directory or is unreadable."""


def secret_path(directory: Path, name: str, suffix: str) -> Path:
    """The file of secret name in directory; refuses names that are not plain words."""
    if not 0 < len(name) <= 64 or not set(name) <= NAME_CHARS or name.startswith("."):
        raise SecretNameError(f"secret name {name!r}: use 1..64 letters, digits, '-', '_', '.'")
    return directory / f"{name}{suffix}"


def write_private(path: Path, data: bytes) -> None:
    """Write data to path atomically, readable by the owner only (dir made 0700)."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
