"""Unix milliseconds: the one time unit of the wire format, the stores and the APIs.

Reports, batches, signed requests and releases carry Unix time in ms, so the
gateway, the cloud and the tools read the clock through this one function
(modules that need a testable clock take it injected, defaulting to this).
"""

from __future__ import annotations

import time


def now_ms() -> int:
    """The current Unix time in milliseconds (wall clock, not monotonic)."""
    return time.time_ns() // 1_000_000
