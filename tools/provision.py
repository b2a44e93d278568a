"""`tandem provision`: issue a node's certificate from the site CA and stage its files.

Writes node.json, cert.der, key.der (0600) and ca.der into
<staging>/<name>/, ready for `tandem flash --node-dir` or for pushing alone
with mpremote. Wi-Fi credentials come from the command line (SSID) and the
environment (TANDEM_WIFI_PASSWORD), never from a file in the repository.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tandem.tools.boards import Board
from tandem.tools.pki import Role, SiteCA
from tandem.wire import nodeconfig

PASSWORD_ENV = "TANDEM_WIFI_PASSWORD"


@dataclass(frozen=True)
class NodeSpec:
    """What goes into a node's node.json."""

    name: str
    board: Board
    gateway_host: str
    gateway_port: int = 5684
    gateway_name: str = "gw-01"
    period_ms: int = 1000
    wifi_ssid: str | None = None
    command_poll_ms: int = 5000


def node_config(spec: NodeSpec, wifi_password: str | None = None) -> dict[str, Any]:
    """node.json for the node (firmware/config.py reads it; tandem.wire.nodeconfig writes it)."""
    return nodeconfig.node_config(nodeconfig.NodeConfigSpec(
        spec.name, spec.board.mcu, spec.gateway_host, spec.gateway_port, spec.gateway_name,
        spec.period_ms, spec.command_poll_ms, spec.board.sensor_model == "accel",
        spec.wifi_ssid), wifi_password)


def staged_files(staging: Path, name: str) -> list[Path]:
    """The files provision writes for a node, in push order."""
    directory = staging / name
    return [directory / n for n in ("node.json", "cert.der", "key.der", "ca.der")]


def provision(spec: NodeSpec, pki_dir: Path, staging: Path, reissue: bool = False,
              wifi_password: str | None = None) -> list[Path]:
    """Issue the certificate (PKIError if already issued and not reissue) and stage files."""
    ca = SiteCA.load(pki_dir)
    identity = ca.issue(spec.name, Role.DEVICE, overwrite=reissue)
    files = staged_files(staging, spec.name)
    files[0].parent.mkdir(parents=True, exist_ok=True)
    password = wifi_password if wifi_password is not None else os.environ.get(PASSWORD_ENV)
    files[0].write_text(json.dumps(node_config(spec, password), indent=1) + "\n")
    for src, dst in zip((identity.cert_der, identity.key_der, identity.ca_der), files[1:],
                        strict=True):
        shutil.copyfile(src, dst)
    os.chmod(files[2], 0o600)
    if password:
        os.chmod(files[0], 0o600)  # it holds the Wi-Fi password
    return files


def push_command(port: str, files: list[Path]) -> list[str]:
    """The mpremote command line that copies the staged files to the board's root."""
    return ["mpremote", "connect", port, "fs", "cp", *map(str, files), ":"]
