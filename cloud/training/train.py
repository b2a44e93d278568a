"""One training run: dataset in, DIR/model.tflite + DIR/card.json (+ DIR/model.keras) out.

`train_job` is a plain function a background queue can call; `tandem-cloud
model train` calls it too. With a parent directory the new version retrains
only the parent's head and is evaluated beside it on the same held-out split
(the card's `parent_*` figures).
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

import numpy as np

from tandem.cloud.timestamps import now_ms
from tandem.cloud.training import dataset as datasets
from tandem.cloud.training import evaluate, model, scoring
from tandem.wire import modelcard
from tandem.wire.modelcard import InputSpec, ModelCard

log = logging.getLogger(__name__)
MODEL_FILE, CARD_FILE, KERAS_FILE = "model.tflite", "card.json", "model.keras"
NAME = "window-ae"


class TrainingError(ValueError):
    """A run that cannot start: a parent with other features, an empty split, ..."""


@dataclass(frozen=True, slots=True)
class TrainRequest:
    """What to train: dataset file, output directory, version name, optional parent directory."""

    dataset: Path
    out: Path
    version: str
    parent: Path | None = None
    seed: int = 1
    epochs: int = 60
    created_by: str = ""


def train_job(request: TrainRequest) -> ModelCard:
    """Train, quantise, choose the threshold, evaluate, and write the version's files."""
    data = datasets.load(request.dataset)
    parent_card = _parent_card(request.parent, data) if request.parent else None
    fitted = model.fit(data, request.parent / KERAS_FILE if request.parent else None,
                       request.seed, request.epochs,
                       *_parent_scaling(parent_card))
    spec = InputSpec(data.features, tuple(float(v) for v in fitted.offsets),
                     tuple(float(v) for v in fitted.scales))
    threshold, figures = _evaluate(fitted.tflite, spec, data, None)
    if parent_card is not None and request.parent is not None:
        parent_bytes = (request.parent / MODEL_FILE).read_bytes()
        _, theirs = _evaluate(parent_bytes, parent_card.input, data, parent_card.threshold)
        figures |= {f"parent_{k}": v for k, v in theirs.items()}
    card = ModelCard(
        version=request.version, name=NAME, kind="autoencoder",
        parent=parent_card.version if parent_card else None, dataset_sha256=data.sha256,
        code_version=_code_version(), sha256=hashlib.sha256(fitted.tflite).hexdigest(),
        size=len(fitted.tflite), input=spec, threshold=threshold, metrics=figures,
        created_by=request.created_by, created_ms=now_ms())
    _write(request.out, fitted, card)
    log.info("trained %s (parent %s): f1 %.3f roc_auc %.3f size %d", card.version,
             card.parent, figures["f1"], figures["roc_auc"], card.size)
    return card


def read_card(directory: Path) -> ModelCard:
    """The card a training run wrote into directory."""
    return modelcard.from_plain(json.loads((directory / CARD_FILE).read_text()))


def _evaluate(tflite: bytes, spec: InputSpec, data: datasets.Dataset,
              threshold: float | None) -> tuple[float, dict[str, float]]:
    """(threshold, held-out figures); the threshold is chosen on validation unless given."""
    if threshold is None:
        x_val, y_val = data.part(datasets.VAL)
        if len(x_val) == 0:
            raise TrainingError("the dataset has no validation windows to set a threshold on")
        x_train, _ = data.part(datasets.TRAIN)
        threshold = scoring.choose_threshold(evaluate.scores(tflite, spec, x_val), y_val,
                                             evaluate.scores(tflite, spec, x_train))
    x_test, y_test = data.part(datasets.TEST)
    figures = scoring.figures(evaluate.scores(tflite, spec, x_test), y_test, threshold)
    return threshold, figures | {"size": float(len(tflite)), "threshold": threshold}


def _parent_card(parent: Path, data: datasets.Dataset) -> ModelCard:
    card = read_card(parent)
    if card.input.features != data.features:
        raise TrainingError(f"parent {card.version} reads {list(card.input.features)}, the "
                            f"dataset has {list(data.features)}: train a new first version")
    return card


def _parent_scaling(card: ModelCard | None) -> tuple[np.ndarray | None, np.ndarray | None]:
    """The parent's scaling: the frozen body was trained on features scaled this way."""
    if card is None:
        return None, None
    return (np.asarray(card.input.offsets, dtype=np.float32),
            np.asarray(card.input.scales, dtype=np.float32))


def _write(out: Path, fitted: model.Fitted, card: ModelCard) -> None:
    out.mkdir(parents=True, exist_ok=True)
    model.save_keras(fitted.keras_model, out / KERAS_FILE)
    (out / MODEL_FILE).write_bytes(fitted.tflite)
    (out / CARD_FILE).write_text(json.dumps(modelcard.to_plain(card), indent=1, sort_keys=True))


def _code_version() -> str:
    try:
        return metadata.version("tandem-iot")
    except metadata.PackageNotFoundError:  # a checkout that is not installed
        return "unknown"

