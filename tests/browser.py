"""A real browser for page tests: Debian's Chromium driven by Playwright (Python).

Import the fixture into a test module (`from tests.browser import browser_page`).
Playwright's own browser download cannot work offline, so the system Chromium is
launched by path; `make test` installs both (Debian `chromium`, PyPI `playwright`).
Screenshots a test wants to keep go to docs/screenshots through `screenshot()`.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

CHROMIUM = os.environ.get("TANDEM_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
# Quiet, offline, root-safe: the sandbox needs user namespaces CI may not grant.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
SCREENSHOTS = Path(__file__).resolve().parent.parent / "docs" / "screenshots"

needs_chromium = pytest.mark.skipif(
    not Path(CHROMIUM).exists() and os.environ.get("CI") != "true",
    reason="Debian chromium not installed (make test installs it)",
)


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    """One Chromium per test module; closed also when a test fails."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture
def browser_page(browser: object) -> Iterator[object]:
    """A fresh context (own cookies) and page; self-signed site certificates accepted
    because the tests pin the site CA elsewhere, and the page is served by a test process."""
    context = browser.new_context(ignore_https_errors=True, viewport={"width": 1280, "height": 860})  # type: ignore[attr-defined]
    context.set_default_timeout(15_000)
    try:
        yield context.new_page()
    finally:
        context.close()


def screenshot(page: object, name: str) -> Path:
    """Save a screenshot of the page under docs/screenshots/NAME.png (for docs and README)."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=False)  # type: ignore[attr-defined]
    return path
