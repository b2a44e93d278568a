"""The one way a test waits for a condition: poll it with a deadline, fail naming it.

Never a bare sleep: on a loaded 2-core machine a fixed sleep is either too short
(flaky) or too long (slow). Poll the condition and give up after `timeout`
seconds with a message saying what did not happen.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import TypeVar

POLL_S = 0.005  # short enough to add no visible latency, long enough not to spin
T = TypeVar("T")


def wait_until(predicate: Callable[[], bool], what: str, timeout: float = 10.0) -> None:
    """Block until predicate() holds; AssertionError naming `what` after timeout seconds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(POLL_S)


async def until(predicate: Callable[[], bool], what: str, timeout: float = 10.0) -> None:
    """The event-loop form of wait_until: the loop keeps running while it polls."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        await asyncio.sleep(POLL_S)


def eventually(probe: Callable[[], T | None], what: str, timeout: float = 10.0,
               poll_s: float = 0.2) -> T:
    """Poll probe (e.g. an HTTP endpoint) until it returns something truthy, and return it."""
    deadline = time.monotonic() + timeout
    while True:
        found = probe()
        if found:
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting until {what}")
        time.sleep(poll_s)
