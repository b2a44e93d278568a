"""The operator console in a real browser: an alarm raised by a real node's reading through a
real gateway is charted in the cloud, and an operator labels it; viewers are kept out of the
admin pages; a forged form is refused; repeated failed sign-ins are throttled.

Cloud, gateway and a MicroPython node (over_temp scenario) run as their own
processes (tandem/tools/site.py); Debian's Chromium is driven by Playwright.
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
from tests.waiting import wait_until

pytestmark = [pytest.mark.timeout(300), needs_chromium]
browser = harness.browser
browser_page = harness.browser_page

PASSWORD = "correct horse battery staple"
NODE = NodeSpec("node-hot", "over_temp", seed=3, period_ms=200)
RULES = ('version = 1\n\n[action.siren]\nkind = "local_alarm"\n\n[[rule]]\nname = "hot25"\n'
         'severity = 3\nwhen = { input = "temp", above = 25.0, clear_below = 24.0 }\n'
         'actions = ["siren"]\n')


def cloud_cli(site: Site, *args: str) -> str:
    done = subprocess.run([str(Path(sys.executable).parent / "tandem-cloud"), *args,
                           "--config", str(site.cloud_config)],
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    """A cloud with an operator and a viewer, a gateway with one rule, and a heating node."""
    running = local_site(tmp_path_factory.mktemp("site"), window_s=1.0, rules=RULES)
    try:
        running.start_cloud()
        secret = running.root / "password.txt"
        secret.write_text(PASSWORD + "\n")
        for name, role in (("olga", "operator"), ("vic", "viewer")):
            cloud_cli(running, "user", "add", name, "--role", role, "--password-file",
                      str(secret))
        running.start_gateway()
        node = running.start_node(NODE, running.issue_node(NODE))
        node.wait_for(r'"ev": ?"ack"', timeout=60)
        yield running
    finally:
        running.stop_all()


def alarms(site: Site) -> list[dict[str, Any]]:
    with site.cloud_client() as client:
        found: list[dict[str, Any]] = client.get("/api/v1/events", params={
            "device": NODE.name, "limit": 100}).json()["events"]
    return found


def sign_in(page: Any, site: Site, user: str, password: str = PASSWORD) -> Any:
    page.goto(f"{site.cloud_url}/login?next=/admin/")
    page.fill("input[name=user]", user)
    page.fill("input[name=password]", password)
    with page.expect_navigation():
        page.click("button[type=submit]")
    return page


def test_an_operator_sees_the_nodes_alarm_on_the_chart_and_labels_it(
        site: Site, browser_page: Any) -> None:
    wait_until(lambda: any(a["name"] == "hot25" for a in alarms(site)),
               "the gateway's hot25 alarm reached the cloud", 120)
    page = sign_in(browser_page, site, "olga")
    assert page.text_content("#signed-in") == "olga (operator)"
    screenshot(page, "console-overview")
    page.goto(f"{site.cloud_url}/admin/console_nodes/")
    assert NODE.name in page.text_content("#rows")
    screenshot(page, "console-nodes")
    page.goto(f"{site.cloud_url}/admin/console_alarms/?device={NODE.name}&hours=1")
    page.wait_for_selector("figure[data-channel=temp] svg .alarm-marker")
    row = page.locator("tr.alarm[data-name=hot25]").first
    assert row.is_visible()
    screenshot(page, "console-alarm-chart")
    row.locator("select[name=label]").select_option("fault")
    row.locator("input[name=note]").fill("bearing overheated")
    with page.expect_navigation():
        row.locator("button[type=submit]").click()
    assert "labelled confirmed fault" in page.text_content(".alert")
    assert page.locator("tr.alarm[data-name=hot25] .label-given").first.text_content() == \
        "confirmed fault"
    screenshot(page, "console-alarm-labelled")
    with site.cloud_client() as client:
        labels = client.get("/api/v1/labels", params={"device": NODE.name}).json()["labels"]
    assert [(lb["alarm_name"], lb["label"], lb["created_by"]) for lb in labels] == [
        ("hot25", "fault", "user:olga")]


def test_a_viewer_cannot_open_users_tokens_or_audit(site: Site, browser_page: Any) -> None:
    page = sign_in(browser_page, site, "vic")
    menu = page.text_content("nav")
    assert "Charts and alarms" in menu and "Audit log" not in menu and "Users" not in menu
    for view in ("console_users", "console_tokens", "console_audit"):
        response = page.goto(f"{site.cloud_url}/admin/{view}/")
        assert response is not None and response.status == 403, view


def test_a_forged_form_without_csrf_token_is_refused(site: Site, browser_page: Any) -> None:
    page = sign_in(browser_page, site, "olga")
    # the session cookie travels, as it would from a hostile page's form; the token cannot
    response = page.request.post(f"{site.cloud_url}/admin/console_alarms/label", form={
        "device": NODE.name, "name": "hot25", "t_ms": "1", "label": "normal"})
    assert response.status == 400
    with site.cloud_client() as client:
        labels = client.get("/api/v1/labels", params={"device": NODE.name}).json()["labels"]
    assert all(lb["label"] != "normal" for lb in labels)


def test_the_login_throttle_engages(site: Site, browser_page: Any) -> None:
    statuses = []
    for _ in range(12):  # the account limit is 10 failures per window
        browser_page.goto(f"{site.cloud_url}/login")
        browser_page.fill("input[name=user]", "mallory")
        browser_page.fill("input[name=password]", "guess")
        with browser_page.expect_navigation() as navigation:
            browser_page.click("button[type=submit]")
        statuses.append(navigation.value.status)
    assert statuses[:10] == [401] * 10 and statuses[10:] == [429, 429]
