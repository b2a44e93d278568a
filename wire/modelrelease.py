"""A signed model release: COSE_Sign1 (wire.cose) by the cloud's release key over

    {"v": 1, "seq": uint, "issued": unix_ms, "rollback": bool, "card": model card,
     "artefacts": [{"kind": "full"|"delta", "from": version|None, "encoding": text,
                    "sha256", "size", "url", "chunk": uint, "chunks": [sha256 per chunk]}]}

Same key and kid as policy releases (wire.release.policy_key_id): a gateway
trusts exactly the key it was given at enrolment. `seq` is the registry's
order of versions, so a gateway refuses a lower seq than the one it runs
(a downgrade) unless the release is an operator's signed `rollback`. Each
artefact lists one sha256 per chunk, so a chunk with wrong bytes is caught
as it arrives and fetched again, not after the whole file.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import cbor2
from cryptography.hazmat.primitives.asymmetric import ec

from tandem.wire.cose import Signer, sign1
from tandem.wire.errors import WireError
from tandem.wire.modelcard import ModelCard, from_plain, to_plain
from tandem.wire.release import open_signed, policy_key_id

MANIFEST_VERSION = 1
MAX_MANIFEST_BYTES = 256 * 1024
MAX_ARTEFACTS = 8
_SHA256 = re.compile(r"^[0-9a-f]{64}$")


@dataclass(frozen=True, slots=True)
class Artefact:
    """One file a gateway can fetch to rebuild the model: the full model or a delta."""

    kind: str                 # "full" | "delta"
    parent: str | None        # the version a delta applies to; None for "full"
    encoding: str             # "xz" (full) | "bsdiff4" (delta)
    sha256: str               # of the artefact bytes as served
    size: int
    url: str                  # path on the cloud (or any HTTP server with Range support)
    chunk: int                # bytes per chunk; the last one may be shorter
    chunks: tuple[str, ...]   # sha256 of each chunk, in order


@dataclass(frozen=True, slots=True)
class ModelRelease:
    """Version card.version, number `seq` in the registry, and how to fetch it."""

    seq: int
    issued_ms: int
    card: ModelCard
    artefacts: tuple[Artefact, ...]
    rollback: bool = False

    def best_for(self, held: set[str]) -> Artefact | None:
        """The smallest artefact this gateway can use, holding the versions in `held`."""
        usable = [a for a in self.artefacts if a.kind == "full" or a.parent in held]
        return min(usable, key=lambda a: a.size, default=None)


def sign_manifest(release: ModelRelease, signer: Signer,
                  public: ec.EllipticCurvePublicKey) -> bytes:
    """The COSE_Sign1 envelope of release, signed by the release (policy) key."""
    payload = cbor2.dumps({
        "v": MANIFEST_VERSION, "seq": release.seq, "issued": release.issued_ms,
        "rollback": release.rollback, "card": to_plain(release.card),
        "artefacts": [_artefact_plain(a) for a in release.artefacts]}, canonical=True)
    return sign1(payload, policy_key_id(public), signer)


def open_manifest(envelope: bytes, trusted: ec.EllipticCurvePublicKey) -> ModelRelease:
    """Verify envelope against the one trusted key and decode it; WireError says why not."""
    obj = open_signed(envelope, trusted, MAX_MANIFEST_BYTES, MANIFEST_VERSION, "model release")
    seq, issued, rollback, arts = (obj.get(k) for k in ("seq", "issued", "rollback",
                                                        "artefacts"))
    if type(seq) is not int or seq < 1 or type(issued) is not int \
            or not isinstance(rollback, bool) or not isinstance(arts, list) \
            or not 0 < len(arts) <= MAX_ARTEFACTS:
        raise WireError("schema", "model release needs seq >= 1, issued, rollback, artefacts")
    card = from_plain(obj.get("card"))
    return ModelRelease(seq, issued, card, tuple(_artefact(a) for a in arts), rollback)


def _artefact_plain(a: Artefact) -> dict[str, Any]:
    return {"kind": a.kind, "from": a.parent, "encoding": a.encoding, "sha256": a.sha256,
            "size": a.size, "url": a.url, "chunk": a.chunk, "chunks": list(a.chunks)}


def _artefact(obj: object) -> Artefact:
    try:
        if not isinstance(obj, dict):
            raise ValueError("not a map")
        art = Artefact(str(obj["kind"]), None if obj["from"] is None else str(obj["from"]),
                       str(obj["encoding"]), str(obj["sha256"]), int(obj["size"]),
                       str(obj["url"]), int(obj["chunk"]), tuple(str(c) for c in obj["chunks"]))
    except (KeyError, TypeError, ValueError) as exc:
        raise WireError("schema", f"malformed artefact: {exc}") from None
    expected = -(-art.size // art.chunk) if art.chunk > 0 else -1
    if art.kind not in ("full", "delta") or (art.kind == "delta") != (art.parent is not None) \
            or not _SHA256.match(art.sha256) or art.size < 1 or art.chunk < 1 \
            or len(art.chunks) != expected or not all(_SHA256.match(c) for c in art.chunks) \
            or not art.url.startswith("/"):
        raise WireError("schema", "artefact needs kind, sha256, size, url, chunk and one "
                                  "sha256 per chunk")
    return art
