"""Pushing a security policy: read the file, validate it, sign the next version, store it.

Files are TOML (`.toml`) or JSON (`.json`); errors name the file, the line
(best effort: the line of the field's key) and the dotted field. The version
is the group's newest plus one, assigned here and signed into the release,
so versions only grow; a gateway refuses any version not above its own.
"""

from __future__ import annotations

import hashlib
import json
import re
import tomllib
from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session

from tandem.cloud.config import CloudConfig
from tandem.cloud.keys.keyfiles import KeyFileError, load_private_key
from tandem.cloud.policy import store as policy_store
from tandem.wire.cose import SoftwareSigner
from tandem.wire.policy import PolicyDocument, PolicyError, parse_policy
from tandem.wire.release import Release, sign_release
from tandem.wire.tomlconfig import line_of


class PolicyFileError(ValueError):
    """A policy file that cannot be pushed; the message names file, line and field."""


def load_policy_file(path: Path) -> PolicyDocument:
    """Read and validate a TOML or JSON policy file."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise PolicyFileError(f"{path}: cannot read: {exc}") from None
    return parse_policy_text(path, text)


def parse_policy_text(path: Path, text: str) -> PolicyDocument:
    """Validate policy text (TOML, or JSON when path ends in .json); errors name path:line."""
    data = _decode(path, text)
    try:
        return parse_policy(data)
    except PolicyError as exc:
        finder = _json_line_of if path.suffix == ".json" else line_of
        line = finder(text, exc.field)
        where = f"{path}:{line}" if line else str(path)
        raise PolicyFileError(f"{where}: {exc.field}: {exc.problem}") from None


def _decode(path: Path, text: str) -> dict[str, Any]:
    try:
        data = json.loads(text) if path.suffix == ".json" else tomllib.loads(text)
    except json.JSONDecodeError as exc:
        raise PolicyFileError(f"{path}:{exc.lineno}: not valid JSON: {exc.msg}") from None
    except tomllib.TOMLDecodeError as exc:
        raise PolicyFileError(f"{path}: not valid TOML: {exc}") from None
    if not isinstance(data, dict):
        raise PolicyFileError(f"{path}: the policy must be a table / object")
    return data


def _json_line_of(text: str, dotted: str) -> int | None:
    """Best-effort line of a dotted field in JSON: the first line naming its innermost key."""
    key = re.sub(r"\[\d+\]", "", dotted).rsplit(".", 1)[-1]
    pattern = re.compile(r'"' + re.escape(key) + r'"\s*:')
    return next((n for n, line in enumerate(text.splitlines(), 1) if pattern.search(line)), None)


def push(session: Session, config: CloudConfig, group: str, doc: PolicyDocument,
         now_ms: int) -> Release:
    """Sign doc as the group's next version and store it (caller's transaction)."""
    key_path = config.policy.signing_key
    if key_path is None:
        raise KeyFileError("no policy signing key: set [policy] signing_key "
                           "(create one with `tandem-cloud policy keygen`)")
    key = load_private_key(key_path, config.policy.passphrase_env, "policy.signing_key")
    release = Release(group, policy_store.latest_version(session, group) + 1, now_ms, doc)
    envelope = sign_release(release, SoftwareSigner(key), key.public_key())
    policy_store.add_release(session, group, release.version, now_ms,
                             hashlib.sha256(envelope).hexdigest(), envelope)
    return release
