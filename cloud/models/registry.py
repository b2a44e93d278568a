"""The model registry: every version with its card, its stored artefact, whether it is promoted.

`register` takes a trainer's output directory (model.tflite + card.json, a
wire.modelcard ModelCard), checks the bytes against the card, writes the
xz-compressed full artefact under <data_dir>/models/ and records the version.
`promote` marks a version as the one to deploy for its model name; it must beat
the promoted version's held-out F1 (from the cards) unless an admin forces it.
`sign_release` signs a manifest (wire.modelrelease) with the policy key, the
key gateways already trust.
"""

from __future__ import annotations

import hashlib
import json
import lzma
from collections.abc import Sequence
from pathlib import Path

from sqlalchemy import BigInteger, Boolean, Integer, LargeBinary, String, Text, func, select
from sqlalchemy.orm import Mapped, Session, mapped_column

from tandem.cloud.config import CloudConfig
from tandem.cloud.db.base import Base
from tandem.cloud.keys.keyfiles import KeyFileError, load_private_key
from tandem.wire.cose import SoftwareSigner
from tandem.wire.errors import WireError
from tandem.wire.modelcard import ModelCard, from_plain, to_plain
from tandem.wire.modeldelta import make_delta, worth_sending
from tandem.wire.modelrelease import Artefact, ModelRelease, sign_manifest

CHUNK_BYTES = 16 * 1024
ARTEFACT_DIR = "models"
ARTEFACT_URL = "/models/v1/artefact/"
PROMOTION_METRIC = "f1"
DELTA_PARENTS = 2  # deltas from the parent and the grandparent: versions a gateway may hold


class ModelRegistryError(ValueError):
    """A version that cannot be registered, found or promoted; the message says why."""


class ModelVersion(Base):
    """One registered model version (its number `seq` orders versions for downgrade checks)."""

    __tablename__ = "model_versions"

    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    version: Mapped[str] = mapped_column(String(64), unique=True)
    name: Mapped[str] = mapped_column(String(64))
    parent: Mapped[str | None] = mapped_column(String(64), nullable=True)
    sha256: Mapped[str] = mapped_column(String(64))
    size: Mapped[int] = mapped_column(BigInteger)
    card_json: Mapped[str] = mapped_column(Text)
    artefact_sha256: Mapped[str] = mapped_column(String(64))
    artefact_size: Mapped[int] = mapped_column(BigInteger)
    chunks_json: Mapped[str] = mapped_column(Text)
    promoted: Mapped[bool] = mapped_column(Boolean, default=False)
    created_by: Mapped[str] = mapped_column(String(128))
    created_ms: Mapped[int] = mapped_column(BigInteger)

    def card(self) -> ModelCard:
        """The stored card, decoded."""
        return from_plain(json.loads(self.card_json))


class ModelReleaseRow(Base):
    """One signed manifest, exactly as gateways receive it."""

    __tablename__ = "model_releases"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    version: Mapped[str] = mapped_column(String(64))
    rollback: Mapped[bool] = mapped_column(Boolean)
    issued_ms: Mapped[int] = mapped_column(BigInteger)
    envelope: Mapped[bytes] = mapped_column(LargeBinary)


def artefact_dir(config: CloudConfig) -> Path:
    """Where the artefacts are stored (served by /models/v1/artefact/<sha256>)."""
    return Path(config.data_dir) / ARTEFACT_DIR


def register(session: Session, config: CloudConfig, directory: Path, created_by: str,
             now_ms: int, chunk_bytes: int = CHUNK_BYTES) -> ModelVersion:
    """Check and store the trainer's output in `directory` as a new version."""
    if chunk_bytes < 1:
        raise ModelRegistryError(f"chunk size must be >= 1 byte, not {chunk_bytes}")
    card, model = _read_output(directory)
    if session.scalar(select(ModelVersion).where(ModelVersion.version == card.version)):
        raise ModelRegistryError(f"version {card.version} is already registered")
    if card.parent is not None and find(session, card.parent) is None:
        raise ModelRegistryError(f"parent {card.parent} is not registered")
    packed = lzma.compress(model, preset=9)
    digest = hashlib.sha256(packed).hexdigest()
    store = artefact_dir(config)
    store.mkdir(parents=True, exist_ok=True)
    _write_atomic(store / digest, packed)
    chunks = [hashlib.sha256(packed[i:i + chunk_bytes]).hexdigest()
              for i in range(0, len(packed), chunk_bytes)]
    row = ModelVersion(version=card.version, name=card.name, parent=card.parent,
                       sha256=card.sha256, size=card.size,
                       card_json=json.dumps(to_plain(card), sort_keys=True),
                       artefact_sha256=digest, artefact_size=len(packed),
                       chunks_json=json.dumps({"chunk": chunk_bytes, "sha256": chunks}),
                       promoted=False,
                       created_by=created_by or card.created_by, created_ms=now_ms)
    session.add(row)
    session.flush()
    return row


def _read_output(directory: Path) -> tuple[ModelCard, bytes]:
    try:
        model = (directory / "model.tflite").read_bytes()
        card = from_plain(json.loads((directory / "card.json").read_text(encoding="utf-8")))
    except (OSError, ValueError) as exc:
        raise ModelRegistryError(f"{directory}: needs model.tflite and card.json: {exc}") \
            from None
    except WireError as exc:
        raise ModelRegistryError(f"{directory}/card.json: {exc.detail}") from None
    if hashlib.sha256(model).hexdigest() != card.sha256 or len(model) != card.size:
        raise ModelRegistryError(f"{directory}: model.tflite does not match the card's "
                                 "sha256/size")
    return card, model


def _write_atomic(path: Path, data: bytes) -> None:
    partial = path.with_suffix(".part")
    partial.write_bytes(data)
    partial.replace(path)


def find(session: Session, version: str) -> ModelVersion | None:
    """The version, or None."""
    return session.scalar(select(ModelVersion).where(ModelVersion.version == version))


def versions(session: Session) -> Sequence[ModelVersion]:
    """Every version, oldest first."""
    return session.scalars(select(ModelVersion).order_by(ModelVersion.seq)).all()


def promoted(session: Session, name: str) -> ModelVersion | None:
    """The promoted version of model family `name`, if any."""
    return session.scalar(select(ModelVersion).where(ModelVersion.name == name,
                                                     ModelVersion.promoted.is_(True)))


def promote(session: Session, version: str, force: bool = False) -> ModelVersion:
    """Make version the promoted one of its family; it must beat the incumbent unless forced."""
    row = find(session, version)
    if row is None:
        raise ModelRegistryError(f"no model version {version}")
    incumbent = promoted(session, row.name)
    if incumbent is not None and incumbent.seq != row.seq and not force:
        ours = row.card().metrics.get(PROMOTION_METRIC)
        theirs = incumbent.card().metrics.get(PROMOTION_METRIC)
        if ours is None or (theirs is not None and ours <= theirs):
            raise ModelRegistryError(
                f"{version} (held-out {PROMOTION_METRIC} {ours}) does not beat the promoted "
                f"{incumbent.version} ({theirs}); an admin may force it")
    if incumbent is not None:
        incumbent.promoted = False
    row.promoted = True
    session.flush()
    return row


def sign_release(session: Session, config: CloudConfig, version: str, now_ms: int,
                 rollback: bool = False, fleet_wide: bool = True) -> bytes:
    """Sign the manifest of version (rollback: an operator's deliberate downgrade).

    A fleet-wide release is stored: every gateway whose group has no rollout runs
    the newest one. A rollout's manifests are not (the rollout keeps them), so a
    version on trial in one group never reaches another.
    """
    row = find(session, version)
    if row is None:
        raise ModelRegistryError(f"no model version {version}")
    key_path = config.policy.signing_key
    if key_path is None:
        raise KeyFileError("no release signing key: set [policy] signing_key")
    key = load_private_key(key_path, config.policy.passphrase_env, "policy.signing_key")
    chunks = json.loads(row.chunks_json)
    full = Artefact("full", None, "xz", row.artefact_sha256, row.artefact_size,
                    ARTEFACT_URL + row.artefact_sha256, chunks["chunk"], tuple(chunks["sha256"]))
    try:
        deltas = _deltas(session, config, row, chunks["chunk"])
    except (OSError, lzma.LZMAError) as exc:
        raise ModelRegistryError(f"{version}: a stored artefact is unreadable: {exc}") from None
    release = ModelRelease(row.seq, now_ms, row.card(), (full, *deltas), rollback)
    envelope = sign_manifest(release, SoftwareSigner(key), key.public_key())
    if fleet_wide:
        session.add(ModelReleaseRow(version=version, rollback=rollback, issued_ms=now_ms,
                                    envelope=envelope))
        session.flush()
    return envelope


def newest_release(session: Session) -> ModelReleaseRow | None:
    """The newest fleet-wide release: what a gateway whose group has no rollout runs."""
    return session.scalars(select(ModelReleaseRow).order_by(ModelReleaseRow.id.desc())
                           .limit(1)).first()


def _deltas(session: Session, config: CloudConfig, row: ModelVersion,
            chunk: int) -> list[Artefact]:
    """bsdiff4 deltas from the recent ancestors, each only where smaller than the full artefact."""
    store = artefact_dir(config)
    full = (store / row.artefact_sha256).read_bytes()
    new = lzma.decompress(full)
    found, parent = [], row.parent
    for _ in range(DELTA_PARENTS):
        ancestor = find(session, parent) if parent else None
        if ancestor is None:
            break
        delta = make_delta(lzma.decompress((store / ancestor.artefact_sha256).read_bytes()), new)
        if worth_sending(delta, full):
            digest = hashlib.sha256(delta).hexdigest()
            _write_atomic(store / digest, delta)
            found.append(Artefact("delta", ancestor.version, "bsdiff4", digest, len(delta),
                                  ARTEFACT_URL + digest, chunk, tuple(
                                      hashlib.sha256(delta[i:i + chunk]).hexdigest()
                                      for i in range(0, len(delta), chunk))))
        parent = ancestor.parent
    return found


def latest_release(session: Session, version: str) -> ModelReleaseRow | None:
    """The newest signed manifest of version."""
    return session.scalars(select(ModelReleaseRow).where(ModelReleaseRow.version == version)
                           .order_by(ModelReleaseRow.id.desc()).limit(1)).first()


def count(session: Session) -> int:
    """How many versions are registered."""
    return int(session.scalar(select(func.count()).select_from(ModelVersion)) or 0)


def summary(row: ModelVersion) -> dict[str, object]:
    """The version as the API and CLI show it."""
    return {"seq": row.seq, "version": row.version, "name": row.name, "parent": row.parent,
            "sha256": row.sha256, "size": row.size, "artefact_size": row.artefact_size,
            "promoted": row.promoted, "created_by": row.created_by,
            "created_ms": row.created_ms, "card": json.loads(row.card_json)}
