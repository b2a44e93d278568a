"""The model in use, swapped atomically when its file changes.

A new model is loaded and checked completely (on a worker thread) before the
reference switches; a scorer that already holds the old model finishes with
it, and every later call uses the new one, so no window goes unscored and no
window is scored by a half-loaded model. A file that fails to load leaves the
old model in place.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

import numpy.typing as npt

from tandem.gateway.filewatch import FileWatch
from tandem.gateway.inference.model import ModelError, ScoringModel, interpreter_class
from tandem.gateway.supervisor import periodic

log = logging.getLogger(__name__)


class ScoreObserver(Protocol):
    """Sees every score (and every failing invoke) with the model that produced it."""

    def scored(self, model: ScoringModel, score: float, seconds: float) -> None:
        """One window scored in `seconds`."""

    def failed(self, model: ScoringModel, error: Exception) -> None:
        """The model raised at invoke (the window goes unscored)."""


class ModelSlot:
    """Holds the current ScoringModel (or none) and replaces it on request."""

    def __init__(self, expected_size: int | None = None,
                 on_change: Callable[[ScoringModel | None], None] | None = None) -> None:
        self.expected_size = expected_size
        self.model: ScoringModel | None = None
        self.last_error = ""
        self.observer: ScoreObserver | None = None  # the model agent's feedback, when it runs
        self.shadow: ScoringModel | None = None  # scored beside the model, acting on nothing
        self._on_change = on_change

    def score(self, features: npt.ArrayLike) -> float | None:
        """Score with whichever model is current (None without one)."""
        model = self.model  # one read of the reference: the swap cannot split a call
        observer, shadow = self.observer, self.shadow
        if observer is None:
            return None if model is None else model.score(features)
        if model is None:
            if shadow is not None:  # a group's first model: shadowed before anything acts
                self._shadow_score(shadow, features, observer)
            return None
        started = time.perf_counter()
        try:
            score = model.score(features)
        except Exception as exc:  # noqa: BLE001 (any invoke fault is the model's: reported)
            observer.failed(model, exc)
            return None
        observer.scored(model, score, time.perf_counter() - started)
        if shadow is not None and shadow.size == model.size:
            self._shadow_score(shadow, features, observer)
        return score

    @staticmethod
    def _shadow_score(shadow: ScoringModel, features: npt.ArrayLike,
                      observer: ScoreObserver) -> None:
        started = time.perf_counter()
        try:
            score = shadow.score(features)
        except Exception as exc:  # noqa: BLE001 (reported; the shadow never acts)
            observer.failed(shadow, exc)
            return
        observer.scored(shadow, score, time.perf_counter() - started)

    def install(self, model: ScoringModel | None) -> None:
        """Switch to `model` (already loaded); None turns inference off."""
        if model is not None and self.expected_size is not None \
                and model.size != self.expected_size:
            raise ModelError(f"{model.path}: takes {model.size} features, the feature windows "
                             f"give {self.expected_size} bands")
        self.model = model
        if self._on_change is not None:
            self._on_change(model)

    async def load(self, path: Path) -> bool:
        """Load `path` off the event loop and switch to it; False (old model kept) on error."""
        try:
            model = await asyncio.to_thread(ScoringModel.load, path)
            self.install(model)
        except ModelError as exc:
            self.last_error = str(exc)
            log.error("model not loaded, keeping %s: %s",
                      self.model.version if self.model else "no model", exc)
            return False
        log.info("model %s loaded from %s (%d features in)", model.version, path, model.size)
        return True

    async def watch(self, path: Path, stop: asyncio.Event, poll_s: float = 5.0) -> None:
        """Load `path` now and whenever it changes, until `stop` is set."""
        if interpreter_class() is None:
            log.warning("inference disabled: no LiteRT runtime installed "
                        "(pip install ai-edge-litert); rules run without a score")
            return
        watch = FileWatch(path)

        async def step() -> None:
            if watch.changed() and watch.exists:
                await self.load(path)

        await periodic(stop, poll_s, step)
