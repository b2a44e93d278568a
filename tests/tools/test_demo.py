"""Specification of `tandem demo`: the whole system comes up, data and alarms reach the cloud,
and stopping it leaves nothing running."""

from __future__ import annotations

import re
import shutil
import ssl
import sys
from pathlib import Path

import httpx
import pytest

from tandem.tools.procs import Child
from tests.ports import free_port, free_udp_port


@pytest.mark.timeout(240)
def test_the_demo_shows_data_and_alarms_and_stops_cleanly(tmp_path: Path) -> None:
    tandem = shutil.which("tandem", path=str(Path(sys.executable).parent))
    assert tandem
    demo = Child("demo", [tandem, "demo", "--workdir", str(tmp_path / "demo"),
                          "--cloud-port", str(free_port()), "--coap-port", str(free_udp_port()),
                          "--metrics-port", str(free_port()), "--window", "2"])
    try:
        demo.wait_for(r"Tandem demo is up after", timeout=90)
        demo.wait_for(r"first data in the cloud", timeout=90)
        assert_console_login_works(demo, tmp_path / "demo" / "pki" / "ca.pem")
        assert_installer_login_works(demo, tmp_path / "demo" / "pki" / "ca.pem")
        demo.wait_for(r"cloud: \d+ summaries, \d+ alarms \(.*overheat@node-03", timeout=120)
    finally:
        code = demo.stop(timeout=60)  # SIGTERM, as Ctrl-C would
    assert code == 0, demo.tail()
    assert "demo stopped cleanly" in demo.lines
    for child_dir in ("nodes/node-01", "nodes/node-02", "nodes/node-03"):
        assert (tmp_path / "demo" / child_dir / "node.json").exists()


def assert_console_login_works(demo: Child, ca: Path) -> None:
    """The console URL and login the demo prints sign in to the console."""
    printed = next(m for line in demo.lines if (m := re.search(
        r"console\s+(https://\S+)/admin/\s+\(user (\S+), password (\S+)\)", line)))
    url, user, password = printed.groups()
    with httpx.Client(base_url=url, verify=ssl.create_default_context(cafile=ca),
                      timeout=30) as client:
        token = re.search(r'name="csrf_token" value="([^"]+)"', client.get("/login").text)
        assert token is not None
        client.post("/login", data={"user": user, "password": password,
                                    "csrf_token": token.group(1)},
                    headers={"Referer": f"{url}/login"})
        assert client.get("/admin/console_nodes/").status_code == 200


def assert_installer_login_works(demo: Child, ca: Path) -> None:
    """The installer page URL and password the demo prints log in to the gateway's page."""
    printed = next(m for line in demo.lines if (m := re.search(
        r"installer\s+(https://\S+/)\s+\(gateway page; password (\S+),", line)))
    url, password = printed.groups()
    with httpx.Client(base_url=url, verify=ssl.create_default_context(cafile=ca),
                      timeout=30) as client:
        token = re.search(r'name="csrf" value="([^"]+)"', client.get("/login").text)
        assert token is not None
        login = client.post("/login", data={"password": password, "csrf": token.group(1)})
        assert (login.status_code, login.headers["Location"]) == (303, "/")
        assert client.get("/nodes").status_code == 200
