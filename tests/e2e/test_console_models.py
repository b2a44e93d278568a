"""The console's models and fleet health in a real browser: an operator sees a registered model
version and a running rollout, pauses and aborts it (the API then says so, and every step is in
the rollout's log); promotes a version and starts a rollout through the page's form (the API then
shows it); a viewer gets no buttons; the gateways list shows each gateway's reported
backlog and link, and marks the one that stopped reporting unreachable.

Cloud and two gateways run as their own processes (tandem/tools/site.py) and
report their status over the real signed path; versions are registered with
`tandem-cloud model register`, the rollout started through the REST API.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tandem.cloud.keys.keyfiles import write_new_key
from tandem.tools.site import Site, local_site
from tests import browser as harness
from tests.browser import needs_chromium, screenshot
from tests.modelkit import write_version
from tests.waiting import wait_until

pytestmark = [pytest.mark.timeout(300), needs_chromium]
browser = harness.browser
browser_page = harness.browser_page

PASSWORD = "correct horse battery staple"
ROLLOUT = {"group": "plant-a", "version": "m-0002", "previous": "m-0001",
           "canaries": ["gw-01"], "wave_size": 1, "limits": {"soak_s": 3600}}


def cloud_cli(site: Site, *args: str) -> str:
    done = subprocess.run([str(Path(sys.executable).parent / "tandem-cloud"), *args,
                           "--config", str(site.cloud_config)],
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    return done.stdout


def reported(site: Site, gateway: str) -> bool:
    with site.cloud_client() as client:
        return client.get(f"/api/v1/gateways/{gateway}/status").status_code == 200


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    """A cloud with a release key, two model versions, an operator and a viewer; two gateways
    that have reported their status, the second stopped since."""
    root = tmp_path_factory.mktemp("site")
    running = local_site(root / "site", window_s=1.0)
    write_new_key(root / "policy.pem")
    with running.cloud_config.open("a") as config:
        config.write(f'\n[policy]\nsigning_key = "{root / "policy.pem"}"\n')
    try:
        running.start_cloud()
        secret = root / "password.txt"
        secret.write_text(PASSWORD + "\n")
        for name, role in (("olga", "operator"), ("vic", "viewer")):
            cloud_cli(running, "user", "add", name, "--role", role, "--password-file",
                      str(secret))
        for version, seed, parent, f1 in (("m-0001", 1, None, 0.81), ("m-0002", 2, "m-0001",
                                                                       0.87)):
            output = write_version(root / version, version, seed, parent=parent, f1=f1)
            cloud_cli(running, "model", "register", str(output))
        cloud_cli(running, "model", "promote", "m-0001")
        running.start_gateway()
        other = running.add_gateway("gw-02")
        other.register_gateway()
        stopped = other.start_gateway()
        wait_until(lambda: reported(running, "gw-01") and reported(running, "gw-02"),
                   "both gateways reported their status", 60)
        stopped.stop()
        other.forget(stopped)
        yield running
    finally:
        running.stop_all()


def sign_in(page: Any, site: Site, user: str) -> Any:
    page.goto(f"{site.cloud_url}/login?next=/admin/")
    page.fill("input[name=user]", user)
    page.fill("input[name=password]", PASSWORD)
    with page.expect_navigation():
        page.click("button[type=submit]")
    return page


def rollout_state(site: Site) -> dict[str, Any]:
    with site.cloud_client() as client:
        shown: dict[str, Any] = client.get("/api/v1/rollouts/plant-a").json()
    return shown


def test_an_operator_sees_a_version_and_its_rollout_then_pauses_and_aborts_it(
        site: Site, browser_page: Any) -> None:
    with site.cloud_client() as client:
        started = client.post("/api/v1/rollouts", json=ROLLOUT)
    assert started.status_code == 200, started.text
    page = sign_in(browser_page, site, "olga")
    page.goto(f"{site.cloud_url}/admin/console_models/")
    newest = page.locator("tr.version[data-version=m-0002]")
    assert newest.locator("td.metric-f1").text_content() == "0.870"
    assert page.locator("tr.version[data-version=m-0001] .promoted").is_visible()
    row = page.locator("tr.rollout[data-group=plant-a]")
    assert row.get_attribute("data-state") == "running"
    assert row.locator("td.stage").text_content() == "shadow"
    screenshot(page, "console-models")
    with page.expect_navigation():
        row.locator("button[value=pause]").click()
    assert "pause done, now paused" in page.text_content(".alert")
    assert rollout_state(site)["state"] == "paused"
    with page.expect_navigation():
        page.locator("tr.rollout[data-group=plant-a] button[value=abort]").click()
    assert "abort done, now aborted" in page.text_content(".alert")
    row = page.locator("tr.rollout[data-group=plant-a]")
    assert row.get_attribute("data-state") == "aborted"
    assert row.locator("button").count() == 0  # nothing left to do with it
    shown = rollout_state(site)
    assert shown["state"] == "aborted"
    assert [s["step"] for s in shown["log"]] == ["started", "pause", "abort"]


def test_an_operator_promotes_a_version_and_starts_its_rollout_from_the_page(
        site: Site, browser_page: Any) -> None:
    page = sign_in(browser_page, site, "olga")
    page.goto(f"{site.cloud_url}/admin/console_models/")
    newest = page.locator("tr.version[data-version=m-0002]")
    assert newest.locator(".comparison").text_content() == "f1 0.870 vs 0.810 (m-0001)"
    with page.expect_navigation():
        newest.locator("form.promote-form button").click()
    assert "m-0002 promoted" in page.text_content(".alert")
    with page.expect_navigation():  # m-0001 no longer beats the promoted one
        page.locator("tr.version[data-version=m-0001] form.promote-form button").click()
    assert "does not beat the promoted m-0002" in page.text_content(".alert")
    with page.expect_navigation():
        page.locator("tr.version[data-version=m-0002] a.start-link").click()
    assert page.input_value("#f-soak_s") == "600.0"  # the defaults, prefilled
    page.fill("#f-group", "plant-b")
    page.fill("#f-canaries", "gw-01")
    screenshot(page, "console-rollout-start")
    page.fill("#f-max_p99_ms", "-1")
    with page.expect_navigation():
        page.click("#start-rollout button[type=submit]")
    assert "a number >= 0" in page.text_content(".invalid-feedback[data-field=max_p99_ms]")
    page.fill("#f-max_p99_ms", "40")
    with page.expect_navigation():
        page.click("#start-rollout button[type=submit]")
    assert "rollout of m-0002 to plant-b started in shadow" in page.text_content(".alert")
    row = page.locator("tr.rollout[data-group=plant-b]")
    assert row.get_attribute("data-state") == "running"
    assert row.locator("td.stage").text_content() == "shadow"
    with site.cloud_client() as client:
        shown = client.get("/api/v1/rollouts/plant-b").json()
    assert (shown["version"], shown["limits"]["max_p99_ms"]) == ("m-0002", 40.0)


def test_a_viewer_sees_models_but_no_buttons(site: Site, browser_page: Any) -> None:
    page = sign_in(browser_page, site, "vic")
    page.goto(f"{site.cloud_url}/admin/console_models/")
    assert page.locator("tr.version").count() == 2
    assert page.locator("form.rollout-action, form.rollback-form").count() == 0


def test_the_gateways_list_shows_reported_backlog_and_marks_the_silent_gateway(
        site: Site, browser_page: Any) -> None:
    page = sign_in(browser_page, site, "vic")

    def health_of(gateway: str) -> str:
        page.goto(f"{site.cloud_url}/admin/console_gateways/")
        return str(page.locator(f"tr[data-gateway={gateway}]").get_attribute("data-health"))

    # the stopped gateway's reports stop: unreachable after [scheduling] unreachable_after
    wait_until(lambda: health_of("gw-02") == "unreachable", "gw-02 marked unreachable", 90)
    assert health_of("gw-01") == "ok"
    live = page.locator("tr[data-gateway=gw-01]")
    assert live.locator("td.outbox").text_content().isdigit()
    assert live.locator("td.link").text_content().startswith("up, rtt")
    assert "no report for" in page.locator("tr[data-gateway=gw-02] .reasons").text_content()
    screenshot(page, "console-gateways")
