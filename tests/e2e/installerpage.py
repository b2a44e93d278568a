"""The gateway's installer page from a browser test's side: a password set with the CLI, a login."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

from tandem.tools.site import Site

PASSWORD = "installer-secret-42"


def set_password(site: Site) -> None:
    """`tandem-gateway installer-password` for the site's gateway, as an installer runs it."""
    gateway_cli = str(Path(sys.executable).with_name("tandem-gateway"))
    done = subprocess.run([gateway_cli, "installer-password", "--config",
                           str(site.root / "gateway.toml")], input=PASSWORD + "\n",
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr


def log_in(page: Any, url: str, password: str) -> None:
    """Sign in on the page's login form."""
    page.goto(url + "login")
    page.fill("#password", password)
    page.click("#login")
