"""Train, quantise and evaluate the window autoencoder (TensorFlow; the `train` extra).

The network is a body (encoder, n -> 64 -> 64 -> 8) and a small head
(decoder, 8 -> 16 -> n): the body holds ~95 % of the weights.
A first version trains both on the training windows not labelled as faults;
a later version loads its parent, freezes the body and retrains only the
head, so most bytes of the int8 file stay and binary deltas stay small
(wire/modeldelta.py). The score is the mean squared reconstruction error of
the scaled features, as the gateway computes it (gateway/inference/model.py).

Conversion is full-integer int8 with float32 input and output (the gateway
feeds float features); the representative set includes the anomalous
windows, or the ranges saturate on faults. Seeds are fixed and ops
deterministic: the same dataset and parent give the same .tflite bytes.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
import keras
import tensorflow as tf

from tandem.cloud.training.dataset import TRAIN, Dataset

F32 = npt.NDArray[np.float32]
BODY = ("body_1", "body_2", "body_3")
WIDTH, CODE, HEAD = 64, 8, 16


@dataclass(frozen=True, slots=True)
class Fitted:
    """A trained Keras model, its int8 .tflite bytes and the scaling it was trained with."""

    keras_model: Any
    tflite: bytes
    offsets: F32
    scales: F32


def fit(dataset: Dataset, parent: Path | None, seed: int, epochs: int,
        offsets: F32 | None = None, scales: F32 | None = None) -> Fitted:
    """Train a new model (parent None) or retrain a parent's head; return it converted."""
    keras.utils.set_random_seed(seed)
    tf.config.experimental.enable_op_determinism()
    x, y = dataset.part(TRAIN)
    normal = x[y != 1]  # unlabelled windows are taken as normal; labelled faults are left out
    if offsets is None or scales is None:
        offsets = normal.mean(axis=0).astype(np.float32)
        spread = normal.std(axis=0).astype(np.float32)
        scales = np.where(spread > 1e-6, spread, np.float32(1.0)).astype(np.float32)
    scaled = ((normal - offsets) / scales).astype(np.float32)
    model = _new(x.shape[1]) if parent is None else _head_only(parent)
    model.fit(scaled, scaled, epochs=epochs, batch_size=32, shuffle=True, verbose=0)
    calibration = ((dataset.x - offsets) / scales).astype(np.float32)
    return Fitted(model, quantise(model, calibration), offsets, scales)


def quantise(model: Any, calibration: F32) -> bytes:
    """Full-integer int8 .tflite of model (float32 in and out), calibrated on calibration."""
    def representative() -> Iterator[list[F32]]:
        for row in calibration[:2000]:
            yield [row.reshape(1, -1)]

    with tempfile.TemporaryDirectory(prefix="tandem-export-") as export:
        model.export(export, format="tf_saved_model", verbose=False)
        converter = tf.lite.TFLiteConverter.from_saved_model(export)
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = representative
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        return bytes(converter.convert())


def save_keras(model: Any, path: Path) -> None:
    """Keep the Keras model next to the .tflite: the next version retrains its head."""
    model.save(path)


def _new(n_features: int) -> Any:
    inputs = keras.Input(shape=(n_features,), name="features")
    h = keras.layers.Dense(WIDTH, activation="relu", name="body_1")(inputs)
    h = keras.layers.Dense(WIDTH, activation="relu", name="body_2")(h)
    code = keras.layers.Dense(CODE, name="body_3")(h)
    h = keras.layers.Dense(HEAD, activation="relu", name="head_1")(code)
    out = keras.layers.Dense(n_features, name="head_out")(h)
    model = keras.Model(inputs, out, name="window_autoencoder")
    model.compile(optimizer=keras.optimizers.Adam(0.01), loss="mse")
    return model


def _head_only(parent: Path) -> Any:
    model = keras.models.load_model(parent, compile=False)
    for name in BODY:
        model.get_layer(name).trainable = False
    model.compile(optimizer=keras.optimizers.Adam(0.005), loss="mse")
    return model
