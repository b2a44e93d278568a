"""Model versions for tests, without TensorFlow: tools/make_model.py graphs with a card beside."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from tandem.tools.make_model import build_tflite, fit_autoencoder, healthy_windows
from tandem.wire.modelcard import InputSpec, ModelCard, to_plain


def model_bytes(seed: int, bands: int = 16, latent: int = 4, head_bias: float = 0.0) -> bytes:
    """A valid .tflite autoencoder over `bands` band energies; the seed varies the weights.

    head_bias shifts only the decoder's bias: a head-only version, a few bytes apart.
    """
    weights = fit_autoencoder(healthy_windows(120, bands, 256, seed), latent)
    weights["b2"] = weights["b2"] + head_bias
    return build_tflite(weights, f"test model seed {seed}")


def write_version(directory: Path, version: str, seed: int, *, parent: str | None = None,
                  f1: float = 0.8, features: int = 16, content: bytes | None = None,
                  threshold: float = 2.0) -> Path:
    """A trainer's output directory: model.tflite and card.json (features: the card's count)."""
    data = model_bytes(seed) if content is None else content
    card = ModelCard(version=version, name="vibration-ae", kind="autoencoder", parent=parent,
                     dataset_sha256="0" * 64, code_version="test",
                     sha256=hashlib.sha256(data).hexdigest(), size=len(data),
                     input=InputSpec(tuple(f"band{i}" for i in range(features)),
                                     (0.0,) * features, (1.0,) * features),
                     threshold=threshold, metrics={"f1": f1}, created_by="trainer")
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "model.tflite").write_bytes(data)
    (directory / "card.json").write_text(json.dumps(to_plain(card)))
    return directory
