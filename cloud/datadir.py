"""The cloud's data directory: private to the service (0700), every file it creates 0600.

It holds cloud.db with its -wal and -shm files, the key files and the
development secret. SQLite gives -wal and -shm the mode of the database file,
so creating that file 0600 before SQLite opens it covers them too. Older
installations made these 0644 in 0755 directories: opening tightens them.
"""

from __future__ import annotations

import logging
import os
import secrets
import stat
from pathlib import Path

log = logging.getLogger(__name__)

DIR_MODE = 0o700
FILE_MODE = 0o600
SECRET_FILE = "secret_key"  # development mode's session secret (see development_secret)
_SQLITE_COMPANIONS = ("", "-wal", "-shm", "-journal")


class DataDirError(Exception):
    """A data directory or file that cannot be made private or read."""


def private_dir(path: Path) -> Path:
    """Create path (and missing parents) and make it 0700; return it."""
    path.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
    _tighten(path, DIR_MODE)
    return path


def private_database(path: Path) -> None:
    """Create a SQLite database file 0600 (before SQLite does, 0644) and tighten its companions."""
    if not path.parent.is_dir():
        private_dir(path.parent)
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT, FILE_MODE))
    except OSError as exc:
        raise DataDirError(f"{path}: cannot create the database file: "
                           f"{exc.strerror or exc}") from None
    for suffix in _SQLITE_COMPANIONS:
        companion = path.with_name(path.name + suffix)
        if companion.exists():
            _tighten(companion, FILE_MODE)


def development_secret(data_dir: Path) -> str:
    """This installation's random session secret, made on first use and kept in the data dir.

    Development mode signs sessions with it instead of the published default,
    so nobody can forge a session; it survives restarts so sessions do too.
    """
    path = private_dir(data_dir) / SECRET_FILE
    if not path.exists():
        write_once(path, secrets.token_urlsafe(32) + "\n")
    try:
        _tighten(path, FILE_MODE)
        secret = path.read_text(encoding="ascii").strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise DataDirError(f"{path}: cannot read the development secret: {exc}") from None
    if len(secret) < 16:
        raise DataDirError(f"{path}: the development secret is too short; delete the file "
                           "to make a new one")
    return secret


def write_once(path: Path, text: str) -> None:
    """Create path 0600 holding text, atomically: of two concurrent writers, the first wins."""
    temporary = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE)
    try:
        with os.fdopen(descriptor, "w", encoding="ascii") as out:
            out.write(text)
            out.flush()
            os.fsync(out.fileno())
        os.link(temporary, path)
    except FileExistsError:
        pass  # another process (a sibling worker) made it first: keep theirs
    finally:
        temporary.unlink()


def _tighten(path: Path, mode: int) -> None:
    """Give path mode, saying so when it was wider (an older installation)."""
    current = stat.S_IMODE(path.stat().st_mode)
    if current & ~mode == 0:
        return
    try:
        path.chmod(mode)
    except OSError as exc:
        raise DataDirError(f"{path}: mode {current:o} lets others in and chmod {mode:o} "
                           f"failed: {exc.strerror or exc}") from None
    log.warning("%s was mode %o; made it %o (only the service may read its data)",
                path, current, mode)
