"""Specification of the tests' one wait helper: it returns once true, and fails by name."""

from __future__ import annotations

import asyncio
import itertools

import pytest

from tests.waiting import eventually, until, wait_until


def test_wait_until_returns_as_soon_as_the_condition_holds() -> None:
    calls = itertools.count()
    wait_until(lambda: next(calls) >= 3, "the third call", timeout=5)
    assert next(calls) == 4


def test_wait_until_fails_naming_what_did_not_happen() -> None:
    with pytest.raises(AssertionError, match="waiting for the impossible"):
        wait_until(lambda: False, "the impossible", timeout=0.05)


def test_until_polls_without_blocking_the_event_loop() -> None:
    async def scenario() -> None:
        done = asyncio.Event()
        asyncio.get_running_loop().call_later(0.01, done.set)
        await until(done.is_set, "the timer", timeout=5)
        with pytest.raises(AssertionError, match="waiting for never"):
            await until(lambda: False, "never", timeout=0.05)
    asyncio.run(scenario())


def test_eventually_returns_the_first_truthy_answer() -> None:
    answers = iter([None, {}, {"status": "done"}])
    assert eventually(lambda: next(answers), "a done status", timeout=5, poll_s=0.001) == {
        "status": "done"}
    with pytest.raises(AssertionError, match="waiting until it answers"):
        eventually(lambda: None, "it answers", timeout=0.05, poll_s=0.001)
