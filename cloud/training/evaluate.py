"""Score windows with a .tflite model through LiteRT, as a gateway would (no TensorFlow)."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
from ai_edge_litert.interpreter import Interpreter

from tandem.wire.modelcard import InputSpec


def scores(model: bytes, spec: InputSpec, x: npt.NDArray[np.float32]) -> npt.NDArray[np.float64]:
    """Each window's score: mean squared reconstruction error (autoencoder) or the output."""
    interpreter = Interpreter(model_content=model)
    interpreter.allocate_tensors()
    inp = interpreter.get_input_details()[0]["index"]
    out = interpreter.get_output_details()[0]["index"]
    offsets = np.asarray(spec.offsets, dtype=np.float32)
    scales = np.asarray(spec.scales, dtype=np.float32)
    scaled = ((x - offsets) / scales).astype(np.float32)
    result = np.empty(len(scaled), dtype=np.float64)
    for i, row in enumerate(scaled):
        interpreter.set_tensor(inp, row.reshape(1, -1))
        interpreter.invoke()
        output = interpreter.get_tensor(out).reshape(-1)
        result[i] = float(np.mean((output - row) ** 2)) if output.size > 1 else float(output[0])
    return result
