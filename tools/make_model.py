"""Build a tiny anomaly-scoring .tflite model, without TensorFlow.

The model is a linear autoencoder over log band energies, fitted in closed
form (PCA with numpy) on synthetic "healthy machine" windows, written as a
TFLite FlatBuffer through the schema classes that ship with ai-edge-litert
(`ai_edge_litert.schema_py_generated`, plus `flatbuffers`):

    x[1,B] -> ADD eps -> LOG -> FULLY_CONNECTED(B->B, diagonal: standardise) = z
           -> FULLY_CONNECTED(B->K) -> FULLY_CONNECTED(K->B) = z'
           -> SQUARED_DIFFERENCE(z, z') -> MEAN over B -> score[1,1]

so the score is the mean squared reconstruction error of the standardised
log band energies: around or below 1 for windows like the training data,
far above for unusual spectra. Same arguments, same bytes.

    python -m tools.make_model --out tests/fixtures/anomaly16.tflite
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from tandem.gateway.features.spectrum import Bands, band_energies

F32 = npt.NDArray[np.float32]


def healthy_windows(count: int, bands: int, window_n: int, seed: int) -> F32:
    """Band energies of synthetic healthy vibration: a shaft line, a harmonic, noise."""
    rng = np.random.default_rng(seed)
    rate = 1000.0
    t = np.arange(window_n) / rate
    rows = []
    for _ in range(count):
        shaft = rng.uniform(20.0, 40.0)
        signal = rng.uniform(0.5, 1.5) * np.sin(2 * np.pi * shaft * t + rng.uniform(0, 6.3))
        signal += rng.uniform(0.1, 0.4) * np.sin(2 * np.pi * 2 * shaft * t)
        signal += rng.normal(0.0, rng.uniform(0.02, 0.08), window_n)
        rows.append(band_energies(signal, rate, Bands(count=bands)))
    return np.asarray(rows, dtype=np.float32)


EPSILON = 1e-4  # energy floor: below it a band counts as silent


def fit_autoencoder(energies: F32, latent: int) -> dict[str, F32]:
    """Closed-form linear autoencoder (PCA) on standardised log(energies + EPSILON)."""
    x = np.log(energies.astype(np.float64) + EPSILON)
    mean, std = x.mean(axis=0), x.std(axis=0) + 1e-3
    z = (x - mean) / std
    _, _, vt = np.linalg.svd(z, full_matrices=False)
    components = vt[:latent]                      # [K, B]; FULLY_CONNECTED weights are [out, in]
    return {
        "ws": np.diag(1.0 / std).astype(np.float32),
        "bs": (-mean / std).astype(np.float32),
        "w1": components.astype(np.float32),
        "b1": np.zeros(latent, np.float32),
        "w2": components.T.copy().astype(np.float32),
        "b2": np.zeros(len(mean), np.float32),
    }


def build_tflite(weights: dict[str, F32], description: str) -> bytes:
    """Serialise the graph above as a TFLite FlatBuffer."""
    import flatbuffers
    from ai_edge_litert import schema_py_generated as s

    size = weights["w1"].shape[1]
    latent = weights["w1"].shape[0]
    buffers: list[Any] = [s.BufferT()]  # buffer 0: the empty sentinel
    tensors: list[Any] = []

    def tensor(name: str, shape: list[int], data: npt.NDArray[Any] | None = None,
               kind: int = s.TensorType.FLOAT32) -> int:
        buffer = 0
        if data is not None:
            b = s.BufferT()
            b.data = list(np.ascontiguousarray(data).tobytes())
            buffers.append(b)
            buffer = len(buffers) - 1
        t = s.TensorT()
        t.name, t.shape, t.type, t.buffer = name, shape, kind, buffer
        tensors.append(t)
        return len(tensors) - 1

    x = tensor("band_energies", [1, size])
    floor = tensor("epsilon", [1], np.full(1, EPSILON, np.float32))
    shifted = tensor("shifted", [1, size])
    logged = tensor("log_energies", [1, size])
    ws = tensor("standardise/w", [size, size], weights["ws"])
    bs = tensor("standardise/b", [size], weights["bs"])
    z = tensor("standardised", [1, size])
    w1 = tensor("encoder/w", [latent, size], weights["w1"])
    b1 = tensor("encoder/b", [latent], weights["b1"])
    code = tensor("code", [1, latent])
    w2 = tensor("decoder/w", [size, latent], weights["w2"])
    b2 = tensor("decoder/b", [size], weights["b2"])
    recon = tensor("reconstruction", [1, size])
    err = tensor("squared_error", [1, size])
    axis = tensor("axis", [1], np.array([1], np.int32), s.TensorType.INT32)
    score = tensor("score", [1, 1])

    codes: list[int] = []

    def op(builtin: int, inputs: list[int], outputs: list[int],
           options_type: int = 0, options: Any = None) -> Any:
        if builtin not in codes:
            codes.append(builtin)
        o = s.OperatorT()
        o.opcodeIndex, o.inputs, o.outputs = codes.index(builtin), inputs, outputs
        o.builtinOptionsType, o.builtinOptions = options_type, options
        return o

    ops = [
        op(s.BuiltinOperator.ADD, [x, floor], [shifted], s.BuiltinOptions.AddOptions,
           s.AddOptionsT()),
        op(s.BuiltinOperator.LOG, [shifted], [logged]),
        op(s.BuiltinOperator.FULLY_CONNECTED, [logged, ws, bs], [z],
           s.BuiltinOptions.FullyConnectedOptions, s.FullyConnectedOptionsT()),
        op(s.BuiltinOperator.FULLY_CONNECTED, [z, w1, b1], [code],
           s.BuiltinOptions.FullyConnectedOptions, s.FullyConnectedOptionsT()),
        op(s.BuiltinOperator.FULLY_CONNECTED, [code, w2, b2], [recon],
           s.BuiltinOptions.FullyConnectedOptions, s.FullyConnectedOptionsT()),
        op(s.BuiltinOperator.SQUARED_DIFFERENCE, [z, recon], [err],
           s.BuiltinOptions.SquaredDifferenceOptions, s.SquaredDifferenceOptionsT()),
        op(s.BuiltinOperator.MEAN, [err, axis], [score], s.BuiltinOptions.ReducerOptions,
           _keep_dims(s.ReducerOptionsT())),
    ]
    graph = s.SubGraphT()
    graph.tensors, graph.inputs, graph.outputs, graph.operators = tensors, [x], [score], ops
    graph.name = "main"
    model = s.ModelT()
    model.version = 3
    model.description = description
    model.subgraphs = [graph]
    model.buffers = buffers
    model.operatorCodes = [_opcode(s, c) for c in codes]
    builder = flatbuffers.Builder(4096)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def _keep_dims(options: Any) -> Any:
    options.keepDims = True
    return options


def _opcode(s: Any, builtin: int) -> Any:
    code = s.OperatorCodeT()
    code.builtinCode = builtin
    code.deprecatedBuiltinCode = min(builtin, 127)
    code.version = 1
    return code


def main(argv: list[str] | None = None) -> int:
    """Fit on synthetic data and write the model (and a JSON note beside it)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--bands", type=int, default=16)
    parser.add_argument("--latent", type=int, default=4)
    parser.add_argument("--windows", type=int, default=400)
    parser.add_argument("--window-n", type=int, default=256)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args(argv)
    energies = healthy_windows(args.windows, args.bands, args.window_n, args.seed)
    weights = fit_autoencoder(energies, args.latent)
    note = {"tandem_model": 1, "input": f"{args.bands} equal band energies over 0..Nyquist "
            "(gateway.pipeline.spectrum, Bands(count))", "output": "score >= 0",
            "latent": args.latent, "seed": args.seed, "window_n": args.window_n}
    data = build_tflite(weights, json.dumps(note, sort_keys=True))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_bytes(data)
    print(f"{args.out}: {len(data)} bytes, {args.bands} bands in, score out")
    return 0


if __name__ == "__main__":
    sys.exit(main())
