"""Pure functions behind each privacy action (no I/O, no state besides a caller's RNG)."""

from __future__ import annotations

import bisect
import hashlib
import hmac
import math
import os

import numpy as np

from tandem.wire.batch import Summary
from tandem.wire.policy import FieldRule

PSEUDONYM_PREFIX = "p-"
PSEUDONYM_HEX = 24  # 96 bits: collisions within one site are not a concern
SUMMARY_STATISTICS = 4  # min, max, mean, last: the epsilon of a summary is split four ways


def pseudonym(key: bytes, device: str) -> str:
    """Keyed pseudonym of a device id: "p-" + 24 hex of HMAC-SHA256(key, id); stable per key."""
    mac = hmac.new(key, device.encode(), hashlib.sha256).hexdigest()
    return PSEUDONYM_PREFIX + mac[:PSEUDONYM_HEX]


def generalise(value: float, rule: FieldRule) -> float:
    """Coarsen value: round to a step, map to its bucket's lower edge, or truncate digits.

    Each variant is monotone, so a summary's min <= mean <= max survives it.
    """
    if rule.step is not None:
        steps = round(value / rule.step)
        return float(round(steps * rule.step, 12))
    if rule.digits is not None:  # location truncation: toward zero, never rounded up
        scale: int = 10 ** rule.digits
        return float(math.trunc(value * scale) / scale)
    if rule.buckets:
        index = bisect.bisect_right(rule.buckets, value) - 1
        return float(rule.buckets[max(index, 0)])
    raise ValueError(f"generalise rule for {rule.field!r} has no step, digits or buckets")


def new_rng() -> np.random.Generator:
    """A generator seeded from the OS (noise must not be predictable from the code)."""
    return np.random.default_rng(int.from_bytes(os.urandom(16), "big"))


def laplace_scale(rule: FieldRule, queries: int = 1) -> float:
    """Scale b = sensitivity * queries / epsilon (sequential composition over queries)."""
    if rule.epsilon is None or rule.sensitivity is None:
        raise ValueError(f"perturb rule for {rule.field!r} needs epsilon and sensitivity")
    return rule.sensitivity * queries / rule.epsilon


def perturb(value: float, rule: FieldRule, rng: np.random.Generator) -> float:
    """value + Laplace(0, sensitivity / epsilon): epsilon-DP for one value."""
    return value + float(rng.laplace(0.0, laplace_scale(rule)))


def perturb_summary(summary: Summary, rule: FieldRule, rng: np.random.Generator) -> Summary:
    """Noise on each statistic at epsilon/4, then reordered so min <= mean <= max still holds.

    The reordering is post-processing of noisy values, so the record as a
    whole is epsilon-DP with respect to the given sensitivity.
    """
    scale = laplace_scale(rule, SUMMARY_STATISTICS)
    noise = rng.laplace(0.0, scale, SUMMARY_STATISTICS)
    low, high, mean, last = (float(v + n) for v, n in zip(
        (summary.minimum, summary.maximum, summary.mean, summary.last), noise, strict=True))
    low, high = min(low, high, mean, last), max(low, high, mean, last)
    return Summary(summary.device, summary.channel, summary.t0_ms, summary.t1_ms, summary.count,
                   low, high, mean, last)


def generalise_summary(summary: Summary, rule: FieldRule) -> Summary:
    """Every statistic generalised."""
    return Summary(summary.device, summary.channel, summary.t0_ms, summary.t1_ms, summary.count,
                   generalise(summary.minimum, rule), generalise(summary.maximum, rule),
                   generalise(summary.mean, rule), generalise(summary.last, rule))
