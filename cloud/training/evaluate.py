"""Score windows with a .tflite model through LiteRT, as a gateway would (no TensorFlow)."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
from ai_edge_litert.interpreter import Interpreter

from tandem.wire.modelcard import InputSpec

F32 = npt.NDArray[np.float32]


class Scorer:
    """One interpreter for a model and its input spec; `score` takes one raw feature vector."""

    def __init__(self, model: bytes, spec: InputSpec) -> None:
        self._interpreter = Interpreter(model_content=model)
        self._interpreter.allocate_tensors()
        self._in = self._interpreter.get_input_details()[0]["index"]
        self._out = self._interpreter.get_output_details()[0]["index"]
        self._offsets = np.asarray(spec.offsets, dtype=np.float32)
        self._scales = np.asarray(spec.scales, dtype=np.float32)

    def score(self, features: F32) -> float:
        """Mean squared reconstruction error (autoencoder) or the single output (classifier)."""
        row = ((features - self._offsets) / self._scales).astype(np.float32).reshape(1, -1)
        self._interpreter.set_tensor(self._in, row)
        self._interpreter.invoke()
        output = self._interpreter.get_tensor(self._out).reshape(-1)
        return float(np.mean((output - row[0]) ** 2)) if output.size > 1 else float(output[0])


def scores(model: bytes, spec: InputSpec, x: F32) -> npt.NDArray[np.float64]:
    """Each window's score, in order."""
    scorer = Scorer(model, spec)
    return np.array([scorer.score(row) for row in x], dtype=np.float64)
