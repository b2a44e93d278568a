"""The compute score: a short fixed numpy FFT workload, timed and normalised.

Score 1.0 is the reference machine (REFERENCE_S for one round on one core); a core
twice as fast scores 2.0. Gateways and the cloud workers run the same workload, so
`compute / score` estimates the seconds a task takes on either (tandem.wire.resources).
"""

from __future__ import annotations

import time
from collections.abc import Callable

REFERENCE_S = 0.010   # one round on the reference core (a 2020s laptop core, numpy 2.x)
_SIZE = 16384         # the spectral-analysis window size the real tasks use
_BATCH = 16


def _round() -> None:
    """One round: a batch of real FFTs and magnitudes, like one spectral task step."""
    import numpy as np  # deferred: only the measuring program needs numpy

    rng = np.random.default_rng(7)
    x = rng.standard_normal((_BATCH, _SIZE))
    np.abs(np.fft.rfft(x, axis=1)).sum()


def measure(rounds: int = 20, clock: Callable[[], float] = time.perf_counter) -> float:
    """The score of this core: reference seconds over the best measured round."""
    if rounds < 1:
        raise ValueError("rounds must be at least 1")
    _round()  # warm-up: imports, allocator, FFT plan
    best = float("inf")
    for _ in range(rounds):
        start = clock()
        _round()
        best = min(best, clock() - start)
    return REFERENCE_S / max(best, 1e-9)
