"""Key management: where the data keys that encrypt sensitive columns come from.

A `KeyProvider` hands out 256-bit data keys by id and names the current one
(new values are encrypted with it; old values keep naming the key they were
encrypted with, so keys can rotate without re-encrypting everything at once).
Providers are chosen by `[security] key_provider` from `KEY_PROVIDERS`; the
default, "local", keeps the keys in a file under data_dir, created mode 0600
on first start and refused if group or others may read it.

The engine that reads and writes encrypted columns carries its provider
(`attach`), so `EncryptedText` (cloud/keys/encrypted.py) finds it from the dialect
without globals, in the service and in the CLI alike.
"""

from __future__ import annotations

import base64
import os
import re
import secrets
import stat
import threading
from pathlib import Path
from typing import Any, ClassVar, Protocol

from sqlalchemy import Engine

from tandem.cloud.config import CloudConfig

KEY_BYTES = 32
KEY_ID = re.compile(r"^[A-Za-z0-9_-]{1,32}$")
_ATTRIBUTE = "tandem_key_provider"


class KeyUnavailable(Exception):
    """A key that cannot be had: missing, unsafe or malformed key material."""


class KeyProvider(Protocol):
    """Source of data keys."""

    @property
    def current_key_id(self) -> str:
        """The id of the key new values are encrypted with."""
        ...

    def data_key(self, key_id: str) -> bytes:
        """The 32-byte key called key_id; raise KeyUnavailable if there is none."""
        ...


class LocalKeyFile:
    """Keys in a local file, one `<id> <base64 key>` per line; the last line is current."""

    name: ClassVar[str] = "local"

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._keys = _read_keys(path) if path.exists() else _create(path)

    @classmethod
    def from_config(cls, config: CloudConfig) -> LocalKeyFile:
        """The key file named by [security] key_file (default data_dir/keys/at-rest.keys)."""
        return cls(config.security.key_file or config.data_dir / "keys" / "at-rest.keys")

    @property
    def current_key_id(self) -> str:
        """The id on the file's last line."""
        return next(reversed(self._keys))

    def data_key(self, key_id: str) -> bytes:
        """The key called key_id, re-reading the file once if it was rotated since."""
        with self._lock:
            if key_id not in self._keys:
                self._keys = _read_keys(self.path)
            try:
                return self._keys[key_id]
            except KeyError:
                raise KeyUnavailable(f"{self.path}: no key called {key_id!r}") from None

    def rotate(self) -> str:
        """Append a new key, which becomes current; return its id."""
        with self._lock:
            self._keys = _read_keys(self.path)
            key_id = f"k{len(self._keys) + 1}"
            with self.path.open("a", encoding="ascii") as out:
                out.write(_line(key_id, secrets.token_bytes(KEY_BYTES)))
            self._keys[key_id] = _read_keys(self.path)[key_id]
            return key_id


KEY_PROVIDERS: dict[str, type[LocalKeyFile]] = {LocalKeyFile.name: LocalKeyFile}


def open_provider(config: CloudConfig) -> KeyProvider:
    """The key provider config names."""
    cls = KEY_PROVIDERS.get(config.security.key_provider)
    if cls is None:
        raise config.error("security.key_provider", f"must be one of "
                           f"{', '.join(KEY_PROVIDERS)}, got {config.security.key_provider!r}")
    try:
        return cls.from_config(config)
    except KeyUnavailable as exc:
        raise config.error("security.key_file", str(exc)) from None


def attach(engine: Engine, provider: KeyProvider) -> None:
    """Let encrypted columns read and written through engine use provider."""
    setattr(engine.dialect, _ATTRIBUTE, provider)


def provider_of(dialect: Any) -> KeyProvider:
    """The provider attached to the engine of dialect."""
    provider: KeyProvider | None = getattr(dialect, _ATTRIBUTE, None)
    if provider is None:
        raise KeyUnavailable("this engine has no key provider; open it with "
                             "database.connect(config)")
    return provider


def _read_keys(path: Path) -> dict[str, bytes]:
    try:
        mode = path.stat().st_mode
        if mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise KeyUnavailable(f"{path}: group or others may access the key file "
                            f"(mode {stat.S_IMODE(mode):o}); chmod 600 it")
        text = path.read_text(encoding="ascii")
    except (OSError, UnicodeDecodeError) as exc:
        raise KeyUnavailable(f"{path}: cannot read key file: {exc}") from None
    keys: dict[str, bytes] = {}
    for number, line in enumerate(text.splitlines(), 1):
        if line.strip() and not line.startswith("#"):
            key_id, key = _parse(path, number, line)
            keys[key_id] = key
    if not keys:
        raise KeyUnavailable(f"{path}: no keys in the key file")
    return keys


def _parse(path: Path, number: int, line: str) -> tuple[str, bytes]:
    parts = line.split()
    try:
        key = base64.b64decode(parts[1], validate=True) if len(parts) == 2 else b""
    except ValueError:
        key = b""
    if not KEY_ID.match(parts[0]) or len(key) != KEY_BYTES:
        raise KeyUnavailable(f"{path}:{number}: expected '<id> <base64 of {KEY_BYTES} bytes>'")
    return parts[0], key


def _create(path: Path) -> dict[str, bytes]:
    """Write a first key, atomically: a concurrent first start finds one file or the other's."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w", encoding="ascii") as out:
        out.write("# Tandem data keys: never share, back up safely; the last line is current\n")
        out.write(_line("k1", secrets.token_bytes(KEY_BYTES)))
        out.flush()
        os.fsync(out.fileno())
    try:
        os.link(temporary, path)
    except FileExistsError:
        pass
    finally:
        temporary.unlink()
    return _read_keys(path)


def _line(key_id: str, key: bytes) -> str:
    return f"{key_id} {base64.b64encode(key).decode('ascii')}\n"
