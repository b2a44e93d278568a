"""A loaded .tflite scoring model: float32 features [1, N] in, one score out.

The interpreter comes from `ai_edge_litert` (LiteRT), else from the older
`tflite_runtime`; with neither installed `interpreter_class()` returns None
and the gateway runs without inference. A model whose output has N values
instead of one is taken as an autoencoder: the score is the mean squared
difference between input and output.
"""

from __future__ import annotations

import hashlib
import importlib
import threading
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

_INTERPRETER_MODULES = ("ai_edge_litert.interpreter", "tflite_runtime.interpreter")


class ModelError(Exception):
    """A model file that cannot be loaded or does not fit the gateway's features."""


def interpreter_class() -> Any | None:
    """The Interpreter class of the first LiteRT runtime installed, or None."""
    for name in _INTERPRETER_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name is not None and name.startswith(exc.name):
                continue  # that runtime is not installed
            raise
        return module.Interpreter
    return None


class ScoringModel:
    """One interpreter with its tensors allocated; `score` is safe from any thread."""

    def __init__(self, path: Path, interpreter: Any, version: str) -> None:
        self.path = path
        self.version = version
        self._interpreter = interpreter
        self._lock = threading.Lock()
        inputs = interpreter.get_input_details()
        outputs = interpreter.get_output_details()
        if len(inputs) != 1 or len(outputs) != 1:
            raise ModelError(f"{path}: expected one input and one output tensor")
        shape = [int(d) for d in inputs[0]["shape"]]
        if len(shape) != 2 or shape[0] != 1 or inputs[0]["dtype"] != np.float32:
            raise ModelError(f"{path}: input must be float32 [1, N], got {shape}")
        self.size = shape[1]
        out_size = int(np.prod(outputs[0]["shape"]))
        if out_size not in (1, self.size):
            raise ModelError(f"{path}: output must hold 1 or {self.size} values, has {out_size}")
        self._autoencoder = out_size != 1
        self._in = inputs[0]["index"]
        self._out = outputs[0]["index"]
        self._buffer = np.zeros((1, self.size), dtype=np.float32)

    @classmethod
    def load(cls, path: Path, interpreter_type: Any | None = None) -> ScoringModel:
        """Read, build and check a model file (blocking: call it off the event loop)."""
        kind = interpreter_type or interpreter_class()
        if kind is None:
            raise ModelError("no LiteRT runtime installed (pip install ai-edge-litert)")
        try:
            content = path.read_bytes()
            interpreter = kind(model_content=content, num_threads=1)
            interpreter.allocate_tensors()
        except (OSError, ValueError, RuntimeError) as exc:
            raise ModelError(f"{path}: cannot load: {exc}") from None
        model = cls(path, interpreter, hashlib.sha256(content).hexdigest()[:12])
        model.score(np.zeros(model.size))  # fail here, not on the first window
        return model

    def score(self, features: npt.ArrayLike) -> float:
        """The model's score for one feature vector of length `size`."""
        with self._lock:
            self._buffer[0, :] = features
            self._interpreter.set_tensor(self._in, self._buffer)
            self._interpreter.invoke()
            out = self._interpreter.get_tensor(self._out)
            if self._autoencoder:
                return float(np.mean((out.reshape(-1) - self._buffer[0]) ** 2))
            return float(out.reshape(-1)[0])
