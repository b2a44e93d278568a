"""Drift and score statistics of a model over a device's history (task kind "drift").

The history is split at `split_ms` into a reference and a recent part; the
result holds count, mean, standard deviation and quantiles of the scores in
each, the mean shift in reference standard deviations, and the population
stability index over the reference's deciles (PSI > 0.2 is the usual
"the input has drifted" line).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

_EPS = 1e-6  # keeps an empty bin from making PSI infinite


def score_drift(history: Sequence[tuple[int, float]], split_ms: int) -> dict[str, Any]:
    """Statistics of (t_ms, score) pairs before and from split_ms, and their drift."""
    reference = np.array([s for t, s in history if t < split_ms], dtype=np.float64)
    recent = np.array([s for t, s in history if t >= split_ms], dtype=np.float64)
    result: dict[str, Any] = {"reference": _stats(reference), "recent": _stats(recent)}
    if len(reference) < 2 or len(recent) == 0:
        result.update(shift=None, psi=None)
        return result
    std = float(reference.std()) or _EPS
    result["shift"] = (float(recent.mean()) - float(reference.mean())) / std
    result["psi"] = _psi(reference, recent)
    return result


def _stats(values: np.ndarray) -> dict[str, Any]:
    if len(values) == 0:
        return {"n": 0}
    q = np.quantile(values, [0.5, 0.9, 0.99])
    return {"n": len(values), "mean": float(values.mean()), "std": float(values.std()),
            "p50": float(q[0]), "p90": float(q[1]), "p99": float(q[2])}


def _psi(reference: np.ndarray, recent: np.ndarray) -> float:
    edges = np.unique(np.quantile(reference, np.linspace(0, 1, 11)))
    edges[0], edges[-1] = -math.inf, math.inf
    ref = np.histogram(reference, edges)[0] / len(reference) + _EPS
    new = np.histogram(recent, edges)[0] / len(recent) + _EPS
    return float(np.sum((new - ref) * np.log(new / ref)))
