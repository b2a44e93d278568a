"""A node's provisioning bundle from the gateway: node.json, the site CA, and what comes next.

A gateway does not hold the site CA key (the operator's PKI machine does,
`tandem pki`), so it cannot issue the node's certificate. The bundle is the
part the gateway knows: node.json pointing at this gateway (address, port,
certificate name), ca.der (the site CA the node checks the gateway against),
and README.txt with the exact `tandem provision` command that issues the
node's certificate and key next to the CA key and stages all four files.
"""

from __future__ import annotations

import io
import json
import shlex
import zipfile
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from tandem.wire.certprofile import check_name
from tandem.wire.nodeconfig import NodeConfigSpec, node_config


@dataclass(frozen=True)
class BundleRequest:
    """Which node, and how it reaches this gateway."""

    name: str
    gateway_host: str
    gateway_port: int
    gateway_name: str
    period_ms: int = 1000
    board: str = "esp32-devkitc"
    raw: bool = True  # raw snippets: the default board carries an accelerometer


def provision_command(request: BundleRequest) -> list[str]:
    """The `tandem provision` command line to run where the site CA key lives."""
    return ["tandem", "provision", request.name, "--board", request.board, "--pki", "<site-pki>",
            "--gateway-host", request.gateway_host, "--gateway-port", str(request.gateway_port),
            "--gateway-name", request.gateway_name, "--period-ms", str(request.period_ms)]


def make_bundle(request: BundleRequest, site_ca_pem: Path) -> bytes:
    """The zip: <name>/node.json, <name>/ca.der, <name>/README.txt (ProfileError: bad name)."""
    check_name(request.name)
    ca = x509.load_pem_x509_certificate(site_ca_pem.read_bytes())
    spec = NodeConfigSpec(request.name, "esp32", request.gateway_host, request.gateway_port,
                          request.gateway_name, request.period_ms, raw=request.raw)
    files: dict[str, str | bytes] = {"node.json": json.dumps(node_config(spec), indent=1) + "\n",
             "ca.der": ca.public_bytes(serialization.Encoding.DER),
             "README.txt": _readme(request)}
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in files.items():
            archive.writestr(f"{request.name}/{name}", data)
    return out.getvalue()


def _readme(request: BundleRequest) -> str:
    return f"""Provisioning bundle for node {request.name} of gateway {request.gateway_name}

node.json  reports to {request.gateway_host}:{request.gateway_port} (DTLS, certificate name
           {request.gateway_name}); edit "board" for a host test node
ca.der     the site CA: the node accepts only a gateway certificate it issued

The node still needs its own certificate and key (cert.der, key.der). The gateway
cannot issue them: the site CA key stays on the operator's PKI machine. There run

  {shlex.join(provision_command(request))}

which issues them and stages node.json, cert.der, key.der and ca.der for
`tandem flash --node-dir` (add --push to copy them to a board with mpremote).
"""
