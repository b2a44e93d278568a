"""The security chain with every program its own process: enrol, push a policy, refuse a forgery.

The gateway enrols with a one-time token (the CLI of each side), receives the
cloud's policy key, and runs; a node reports temp and vib over DTLS. A policy
pushed to the gateway's group (pseudonymise device ids, drop vib) changes what
the cloud receives next; a policy signed by another key is refused and the
gateway keeps enforcing the genuine one. Afterwards the gateway's data
directory holds no private key or sealed secret in plaintext.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tandem.gateway.identity.keystore import SoftwareKeyStore
from tandem.gateway.privacy.keys import PSEUDONYM_SECRET
from tandem.tools.site import NodeSpec, Site, local_site
from tests.waiting import eventually

PASSPHRASE_ENV = "TANDEM_E2E_KEY_PASSPHRASE"
PASSPHRASE = "e2e passphrase, not a secret"
GATEWAY_ENV = {"TANDEM_GW_IDENTITY_PASSPHRASE_ENV": PASSPHRASE_ENV, PASSPHRASE_ENV: PASSPHRASE,
               "TANDEM_GW_POLICY_POLL_S": "0.3"}
POLICY = """\
version = 1
[privacy]
device_ids = "pseudonymise"
[[privacy.rule]]
field = "vib"
action = "drop"
"""


def _cli(name: str, *args: str, env: dict[str, str] | None = None) -> str:
    script = Path(sys.executable).parent / name
    done = subprocess.run([str(script), *args], capture_output=True, text=True, timeout=60,
                          env={**_environ(), **(env or {})}, check=False)
    assert done.returncode == 0, done.stderr
    return done.stdout


def _environ() -> dict[str, str]:
    import os

    return dict(os.environ)


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    running = local_site(tmp_path_factory.mktemp("site"), window_s=1.0)
    root = running.root
    keys = root / "cloud-keys"
    for name in ("policy.pem", "data.pem", "forger.pem"):
        _cli("tandem-cloud", "policy", "keygen", "--out", str(keys / name))
    with (root / "cloud.toml").open("a") as f:
        f.write(f'\n[enrol]\nca_cert = "{running.pki / "ca.pem"}"\n'
                f'ca_key = "{running.pki / "ca.key.pem"}"\n'
                f'\n[policy]\nsigning_key = "{keys / "policy.pem"}"\n'
                f'data_key = "{keys / "data.pem"}"\n')
    try:
        running.start_cloud()
        cloud = ["--config", str(root / "cloud.toml")]
        token = _cli("tandem-cloud", "enrol", "token", "--gateway", running.gateway_id,
                     "--group", "plant-a", "--ttl", "10m", *cloud).strip()
        _cli("tandem-gateway", "enrol", "--config", str(root / "gateway.toml"),
             "--cloud", running.cloud_url, "--token", token, env=GATEWAY_ENV)
        running.start_gateway(env=GATEWAY_ENV)
        yield running
    finally:
        running.stop_all()


@pytest.fixture(scope="module")
def client(site: Site) -> Iterator[httpx.Client]:
    with site.cloud_client() as c:
        yield c


def _points(client: httpx.Client, **params: str) -> list[dict[str, Any]]:
    response = client.get("/api/v1/summaries", params={"limit": 10_000, **params})
    response.raise_for_status()
    points: list[dict[str, Any]] = response.json()["points"]
    return points


def _eventually(what: str, probe: Any, timeout: float = 60) -> Any:
    """The cloud's API polled until probe finds what it waits for (argument order of this file)."""
    return eventually(probe, what, timeout)


def _status(site: Site) -> dict[str, Any]:
    out = _cli("tandem-cloud", "policy", "status", "--json", "--config",
               str(site.root / "cloud.toml"))
    gateways = {g["gateway"]: g for g in json.loads(out)["gateways"]}
    return gateways.get(site.gateway_id, {})


def test_a_pushed_policy_changes_the_next_uploads_and_a_forgery_is_refused(
        site: Site, client: httpx.Client) -> None:
    spec = NodeSpec("node-01", "normal", seed=3, period_ms=200, max_reports=100_000)
    node = site.start_node(spec, site.issue_node(spec))
    _eventually("clear summaries of node-01",
           lambda: {p["channel"] for p in _points(client, device="node-01")} == {"temp", "vib"})

    policy = site.root / "policy.toml"
    policy.write_text(POLICY)
    cloud = ["--config", str(site.root / "cloud.toml")]
    assert "v1 published" in _cli("tandem-cloud", "policy", "push", "--group", "plant-a",
                                  str(policy), *cloud)
    _eventually("the gateway's ack of v1", lambda: _status(site).get("ok") is True)
    aliases = _eventually("summaries under a pseudonym", lambda: {
        p["device"] for p in _points(client, gateway=site.gateway_id)
        if p["device"].startswith("p-")})
    assert len(aliases) == 1
    alias = aliases.pop()
    seen = _eventually("two windows under the pseudonym", lambda: len(
        _points(client, device=alias)) >= 2 and _points(client, device=alias))
    assert {p["channel"] for p in seen} == {"temp"}  # vib dropped at the edge
    metrics_url = f"http://127.0.0.1:{site.ports.metrics}/metrics"
    labelled = _eventually("the pseudonym in the gateway's metrics", lambda: (
        text if f'device="{alias}"' in (text := httpx.get(metrics_url).text) else None))
    assert "node-01" not in labelled  # metrics pseudonymise like the uploads

    forged_env = {"TANDEM_CLOUD_POLICY_SIGNING_KEY": str(site.root / "cloud-keys/forger.pem")}
    _cli("tandem-cloud", "policy", "push", "--group", "plant-a", str(policy), *cloud,
         env=forged_env)
    refused = _eventually("the gateway's refusal of v2", lambda: (
        _status(site) if _status(site).get("ok") is False else None))
    assert "not signed by the trusted policy key" in refused["reason"]
    count = len(_points(client, device=alias))
    _eventually("uploads continuing under the genuine policy",
           lambda: len(_points(client, device=alias)) > count + 1)
    assert {p["channel"] for p in _points(client, device=alias)} == {"temp"}
    node.stop()
    site.forget(node)


def test_the_data_directory_holds_no_plaintext_secret(site: Site) -> None:
    gateway = next(c for c in site.children if c.name == "gateway")
    gateway.stop()
    site.forget(gateway)
    data_dir = site.root / "gateway-data"
    store = SoftwareKeyStore(site.pki / "gateway" / site.gateway_id / "key.pem",
                             PASSPHRASE.encode(), data_dir / "keystore" / "sealed")
    secret = store.unseal(PSEUDONYM_SECRET)
    files = [p for p in data_dir.rglob("*") if p.is_file()]
    assert any(p.name == f"{PSEUDONYM_SECRET}.sealed" for p in files)
    for path in files:
        data = path.read_bytes()
        assert b"PRIVATE KEY-----" not in data.replace(b"ENCRYPTED PRIVATE KEY-----", b""), path
        assert secret not in data and secret.hex().encode() not in data, path
