"""A node's node.json (firmware/config.py reads it), written by `tandem provision` and the gateway.

One definition for both writers: the operator tool that issues the node's
certificate (tools/provision.py) and the installer page's provisioning
bundle (gateway/installer/nodebundle.py), which cannot issue certificates.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

TLS_FILES = {"cert": "cert.der", "key": "key.der", "ca": "ca.der"}


@dataclass(frozen=True)
class NodeConfigSpec:
    """What a node.json says: who the node is, which gateway it reports to, how often."""

    name: str
    mcu: str  # "esp32" | "host"
    gateway_host: str
    gateway_port: int = 5684
    gateway_name: str = "gw-01"
    period_ms: int = 1000
    command_poll_ms: int = 5000
    raw: bool = False  # raw snippets (boards with an accelerometer)
    wifi_ssid: str | None = None


def node_config(spec: NodeConfigSpec, wifi_password: str | None = None) -> dict[str, Any]:
    """node.json for the node; the Wi-Fi password only when an SSID is given."""
    config: dict[str, Any] = {
        "version": 1,
        "device_id": spec.name,
        "board": spec.mcu,
        "gateway": {"host": spec.gateway_host, "port": spec.gateway_port,
                    "name": spec.gateway_name},
        "tls": dict(TLS_FILES),
        "period_ms": spec.period_ms,
        "log": "info",
        "commands": {"poll_ms": spec.command_poll_ms},
        "raw": {"enabled": spec.raw},
        "spill": {"max_bytes": 65536},
    }
    if spec.wifi_ssid:
        config["board_options"] = {"wifi": {"ssid": spec.wifi_ssid,
                                            "password": wifi_password or ""}}
    return config
