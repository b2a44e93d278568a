"""The installer page in a real browser against a real gateway daemon and a MicroPython node.

Debian's Chromium (Playwright) logs in over HTTPS with the password set by
`tandem-gateway installer-password`, sees the node and its live values update
without a reload, is refused a forged form, and is throttled after repeated
wrong passwords. Screenshots go to docs/screenshots.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tandem.tools.site import NodeSpec, Site, local_site
from tests import browser as harness
from tests.browser import needs_chromium, screenshot
from tests.e2e.installerpage import PASSWORD
from tests.e2e.installerpage import log_in as _log_in
from tests.e2e.installerpage import set_password as _set_password
from tests.waiting import eventually

pytestmark = [pytest.mark.timeout(180), needs_chromium]

browser = harness.browser
browser_page = harness.browser_page

QUIET_RULES = """\
version = 1

[[rule]]
name = "warm"
when = { input = "temp", above = 1000.0 }
"""


@pytest.fixture
def site(tmp_path: Path) -> Iterator[Site]:
    running = local_site(tmp_path / "site", window_s=2.0, rules=QUIET_RULES)
    try:
        yield running
    finally:
        running.stop_all()


@pytest.fixture
def page_url(site: Site) -> Iterator[str]:
    """A gateway with a password set and one node reporting twice a second: its page URL."""
    _set_password(site)
    gateway = site.start_gateway()
    node = NodeSpec("node-07", period_ms=500)
    site.issue_node(node)
    site.start_node(node)
    yield site.installer_url(gateway)


def test_login_status_and_live_values(browser_page: Any, page_url: str, site: Site) -> None:
    page = browser_page
    page.goto(page_url)
    assert page.url.endswith("/login")  # nothing without a login
    _log_in(page, page_url, PASSWORD)
    page.wait_for_url(page_url)
    page.locator("#node-rows", has_text="node-07").wait_for()
    assert "online" in page.locator("#node-rows").inner_text()
    assert "file (matches certificate)" in page.locator("#identity-list").inner_text()
    latest = page.locator("#live-latest li").first
    latest.wait_for()
    shown = latest.get_attribute("data-value")
    # a new reading replaces the value without a reload (the node reports every 0.5 s)
    page.wait_for_function(
        "v => document.querySelector('#live-latest li').dataset.value !== v", arg=shown)
    assert page.locator("#chart path").count() >= 1
    screenshot(page, "installer-status")


def test_forged_form_without_csrf_is_refused(browser_page: Any, page_url: str) -> None:
    page = browser_page
    _log_in(page, page_url, PASSWORD)
    page.wait_for_url(page_url)
    # the session cookie goes along, the token does not: what a cross-site form would send
    forged = page.request.post(page_url + "logout", form={"nothing": "here"})
    assert forged.status == 403 and "CSRF" in forged.text()
    page.goto(page_url)
    assert page.url == page_url  # still logged in: the forged logout did nothing
    page.click("#logout")
    page.wait_for_url(page_url + "login")


def test_login_throttle_engages(browser_page: Any, page_url: str) -> None:
    page = browser_page
    for _ in range(3):
        _log_in(page, page_url, "not the password")
        assert page.locator("#error").inner_text() == "Wrong password."
    _log_in(page, page_url, PASSWORD)  # right, but the address must wait first
    assert "Too many failed logins" in page.locator("#error").inner_text()
    screenshot(page, "installer-login-throttled")
    assert page.url.endswith("/login")


def test_rule_edited_checked_dry_run_applied_and_fires(browser_page: Any, page_url: str,
                                                       site: Site) -> None:
    page = browser_page
    _log_in(page, page_url, PASSWORD)
    page.wait_for_url(page_url)
    page.locator("#node-rows", has_text="node-07").wait_for()  # readings are being kept
    page.click("#nav-rules")
    page.wait_for_url(page_url + "rules")
    editor = page.locator("#rules-text")
    page.wait_for_function("() => document.getElementById('rules-text').value.length > 0")
    assert editor.input_value() == QUIET_RULES
    # the node's temperature is ~22: a threshold of 0 fires; first typed wrong, at line 5
    editor.fill(QUIET_RULES.replace("above = 1000.0", 'above = "zero"'))
    page.click("#check")
    error = page.locator("#rules-error")
    error.filter(has_text="rules.toml:5:").wait_for()
    assert "rule[0].when.above" in error.inner_text()
    assert error.get_attribute("data-line") == "5"
    screenshot(page, "installer-rules-error")
    editor.fill(QUIET_RULES.replace("above = 1000.0", "above = 0.0"))
    page.click("#dryrun")
    page.locator("#firings tr", has_text="node-07").first.wait_for()
    assert "fired" in page.locator("#firings").inner_text()
    assert error.inner_text() == ""
    screenshot(page, "installer-rules-dryrun")
    page.click("#apply")
    page.locator("#rules-result", has_text="Applied: 1 rules").wait_for()
    assert "above = 0.0" in (site.root / "rules.toml").read_text()
    page.goto(page_url)  # the hot reload puts it in force; the next reading fires it
    page.locator("#alarm-list", has_text="warm on node-07").wait_for(timeout=30_000)


def _admin_token(site: Site) -> str:
    cloud = str(Path(sys.executable).with_name("tandem-cloud"))
    config = ["--config", str(site.cloud_config)]
    subprocess.run([cloud, "user", "add", "auditor", "--role", "admin", "--no-password",
                    *config], capture_output=True, check=True, timeout=60)
    issued = subprocess.run([cloud, "token", "create", "--user", "auditor", "--name", "audit",
                             *config], capture_output=True, text=True, check=True, timeout=60)
    return issued.stdout.strip()


def test_changes_reach_the_cloud_audit_log(browser_page: Any, site: Site) -> None:
    site.start_cloud()
    _set_password(site)
    url = site.installer_url(site.start_gateway())
    page = browser_page
    _log_in(page, url, PASSWORD)
    page.wait_for_url(url)
    page.click("#logout")
    page.wait_for_url(url + "login")
    with site.cloud_client() as cloud:
        cloud.headers["Authorization"] = f"Bearer {_admin_token(site)}"

        def installer_rows() -> list[dict[str, Any]] | None:
            rows = cloud.get("/api/v1/audit", params={"limit": 1000}).json()["entries"]
            found = [r for r in rows if r["event"].startswith("installer.")]
            return found if len(found) >= 2 else None

        rows = eventually(installer_rows, "installer changes in the cloud audit log",
                          timeout=30)
    assert [(r["event"], r["actor"]) for r in rows] == [
        ("installer.login", "gateway:gw-01/installer"),
        ("installer.logout", "gateway:gw-01/installer")]
    assert rows[0]["detail"]["address"] == "127.0.0.1"
    verified = subprocess.run([str(Path(sys.executable).with_name("tandem-cloud")), "audit",
                               "verify", "--config", str(site.cloud_config)],
                              capture_output=True, text=True, timeout=60)
    assert verified.returncode == 0, verified.stdout + verified.stderr
