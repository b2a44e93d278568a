"""The installer page's Modbus screen in a real browser against a real gateway daemon and PLC.

Debian's Chromium (Playwright) logs in over HTTPS, adds a Modbus TCP bus to
the simulated controller (tools/modbus_sim.py in its own process), uploads a
register map with one error and sees the error at its line, fixes it,
applies it (the daemon reloads Modbus in-process), sees the unit polled and
reads it now. Screenshot: docs/screenshots/installer-modbus.png.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pymodbus.client import ModbusTcpClient

from tandem.gateway.modbus import busfile
from tandem.tools.site import Site, local_site
from tests import browser as harness
from tests.browser import needs_chromium, screenshot
from tests.e2e.installerpage import PASSWORD
from tests.e2e.installerpage import log_in as _log_in
from tests.e2e.installerpage import set_password as _set_password
from tests.modbus_rig import PlcProcess

pytestmark = [pytest.mark.timeout(180), needs_chromium]

browser = harness.browser
browser_page = harness.browser_page

PUMP_MAP = """\
version = 1
name = "pump"

[[point]]
name = "level"
table = "holding"
address = 0
type = "uint16"
scale = 0.1
unit = "%"

[[point]]
name = "running"
table = "coil"
address = 3
"""
BAD_MAP = PUMP_MAP.replace('table = "coil"', 'table = "coils"')  # line 14
BAD_LINE = 14


@pytest.fixture
def plc() -> Iterator[PlcProcess]:
    """The simulated controller, unit 1's holding register 0 set to 1234 (level 123.4 %)."""
    running = PlcProcess()
    try:
        client = ModbusTcpClient("127.0.0.1", port=running.port, timeout=5, retries=1)
        try:
            assert client.connect()
            assert not client.write_register(0, 1234, device_id=1).isError()
        finally:
            client.close()
        yield running
    finally:
        running.stop()


@pytest.fixture
def site(tmp_path: Path) -> Iterator[Site]:
    running = local_site(tmp_path / "site", window_s=2.0)
    try:
        yield running
    finally:
        running.stop_all()


def test_unit_added_from_a_map_with_an_error_fixed_applied_and_read(
        browser_page: Any, site: Site, plc: PlcProcess, tmp_path: Path) -> None:
    _set_password(site)
    gateway = site.start_gateway()
    url = site.installer_url(gateway)
    page = browser_page
    _log_in(page, url, PASSWORD)
    page.wait_for_url(url)
    page.click("#nav-modbus")
    page.wait_for_url(url + "modbus")

    page.fill("#bus-name", "plc")
    page.fill("#bus-host", "127.0.0.1")
    page.fill("#bus-tcp-port", str(plc.port))
    page.click("#add-bus")
    page.locator("#bus-result", has_text="Added bus plc").wait_for()
    assert page.locator("#unit-bus").input_value() == "plc"

    page.fill("#unit-name", "pump")
    page.fill("#unit-id", "1")
    page.fill("#unit-poll", "0.5")
    upload = tmp_path / "pump.toml"
    upload.write_text(BAD_MAP)
    page.set_input_files("#map-file", str(upload))
    page.wait_for_function("() => document.getElementById('map-text').value.includes('coils')")
    assert page.locator("#map-name").input_value() == "pump.toml"
    page.click("#map-check")
    error = page.locator("#map-error")
    error.filter(has_text=f"pump.toml:{BAD_LINE}:").wait_for()
    assert "point[1] (running).table" in error.inner_text()
    assert error.get_attribute("data-line") == str(BAD_LINE)
    screenshot(page, "installer-modbus-error")
    page.click("#unit-apply")  # refused as well: nothing is written
    error.filter(has_text=f"pump.toml:{BAD_LINE}:").wait_for()
    data_dir = site.root / "gateway-data"
    assert not (data_dir / "registers" / "pump.toml").exists()

    page.fill("#map-text", PUMP_MAP)
    page.click("#map-check")
    page.locator("#map-result", has_text="OK: 2 points").wait_for()
    page.click("#unit-apply")
    page.locator("#map-result", has_text="Applied: pump, 2 points").wait_for()
    assert error.inner_text() == ""
    gateway.wait_for(r"modbus reloaded: 1 bus\(es\), 1 unit\(s\)", timeout=10)
    assert "pump" in busfile.path_in(data_dir).read_text()

    row = page.locator("#unit-rows tr[data-unit='plc/pump']")
    row.wait_for()
    # polled by the daemon: the Polls column counts up without a reload
    page.wait_for_function("() => +document.querySelector(\"#unit-rows tr[data-unit='plc/pump']"
                           " td:nth-child(5)\").textContent >= 2", timeout=20_000)
    row.locator("button.read-now").click()
    level = page.locator("#read-rows tr[data-point='level']")
    level.wait_for()
    assert level.locator("td").nth(1).inner_text() == "123.4"
    assert page.locator("#read-rows tr[data-point='running'] td").nth(1).inner_text() == "0"
    assert page.locator("#read-result").inner_text().startswith("plc/pump at ")
    page.evaluate("window.scrollTo(0, 0)")
    screenshot(page, "installer-modbus")
