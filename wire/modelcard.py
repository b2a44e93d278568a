"""What a model version is: the card the cloud registry keeps, the release manifest
carries and a gateway checks before it activates the model.

Shared by the trainer (which writes it next to the .tflite), the cloud registry
and release (which sign it into a manifest) and the gateway agent (which checks
the input spec against the features it computes and the sha256 against the bytes
it reconstructed). Plain data: CBOR/JSON through `to_plain`/`from_plain`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from tandem.wire.errors import WireError

_VERSION = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
MAX_FEATURES = 256
MAX_MODEL_BYTES = 16 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class InputSpec:
    """The model's input: feature names in order, and how each was scaled before quantisation."""

    features: tuple[str, ...]
    # x_scaled = (x - offset) / scale, per feature; the gateway applies it before invoke.
    offsets: tuple[float, ...]
    scales: tuple[float, ...]
    dtype: str = "int8"


@dataclass(frozen=True, slots=True)
class ModelCard:
    """One trained model version: identity, lineage, input, operating point, figures."""

    version: str                 # e.g. "m-0003"; unique per model name
    name: str                    # model family, e.g. "vibration-ae"
    kind: str                    # "autoencoder" | "classifier"
    parent: str | None           # version fine-tuned from (head-only), None for a first version
    dataset_sha256: str          # content hash of the dataset file trained on
    code_version: str            # tandem version (+ git describe when known)
    sha256: str                  # of the .tflite bytes
    size: int                    # of the .tflite bytes
    input: InputSpec
    threshold: float             # score at/above which a window is anomalous (chosen on validation)
    metrics: dict[str, float] = field(default_factory=dict)  # precision, recall, f1, roc_auc, ...
    created_by: str = ""
    created_ms: int = 0


def to_plain(card: ModelCard) -> dict[str, Any]:
    """The card as a CBOR/JSON-friendly map."""
    return {
        "version": card.version, "name": card.name, "kind": card.kind, "parent": card.parent,
        "dataset_sha256": card.dataset_sha256, "code_version": card.code_version,
        "sha256": card.sha256, "size": card.size,
        "input": {"features": list(card.input.features), "offsets": list(card.input.offsets),
                  "scales": list(card.input.scales), "dtype": card.input.dtype},
        "threshold": card.threshold, "metrics": dict(card.metrics),
        "created_by": card.created_by, "created_ms": card.created_ms,
    }


def from_plain(obj: object) -> ModelCard:
    """Decode and validate a card; WireError("model_card", why) on anything malformed."""
    try:
        if not isinstance(obj, dict):
            raise ValueError("not a map")
        spec = obj["input"]
        features = tuple(str(f) for f in spec["features"])
        offsets = tuple(float(v) for v in spec["offsets"])
        scales = tuple(float(v) for v in spec["scales"])
        card = ModelCard(
            version=str(obj["version"]), name=str(obj["name"]), kind=str(obj["kind"]),
            parent=None if obj.get("parent") is None else str(obj["parent"]),
            dataset_sha256=str(obj["dataset_sha256"]), code_version=str(obj["code_version"]),
            sha256=str(obj["sha256"]), size=int(obj["size"]),
            input=InputSpec(features, offsets, scales, str(spec.get("dtype", "int8"))),
            threshold=float(obj["threshold"]),
            metrics={str(k): float(v) for k, v in dict(obj.get("metrics", {})).items()},
            created_by=str(obj.get("created_by", "")), created_ms=int(obj.get("created_ms", 0)),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise WireError("model_card", f"malformed model card: {exc}") from exc
    _check(card)
    return card


def _check(card: ModelCard) -> None:
    """Bounds a gateway relies on before it touches the model file."""
    problems = []
    if not _VERSION.match(card.version) or not _VERSION.match(card.name):
        problems.append("version and name: 1-64 of [A-Za-z0-9._-]")
    if card.kind not in ("autoencoder", "classifier"):
        problems.append(f"kind {card.kind!r}: autoencoder or classifier")
    if not _SHA256.match(card.sha256):
        problems.append("sha256: 64 lowercase hex digits")
    if not 0 < card.size <= MAX_MODEL_BYTES:
        problems.append(f"size {card.size}: 1..{MAX_MODEL_BYTES}")
    n = len(card.input.features)
    if not 0 < n <= MAX_FEATURES or len(card.input.offsets) != n or len(card.input.scales) != n:
        problems.append("input: 1..256 features, one offset and one scale each")
    if any(s == 0.0 for s in card.input.scales):
        problems.append("input: a scale of 0")
    if problems:
        raise WireError("model_card", "; ".join(problems))
