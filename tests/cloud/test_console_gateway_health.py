"""The console's gateway list shows each gateway's latest status report (outbox backlog, load,
link) and marks the degraded and the unreachable ones, as the signed reports say."""

from __future__ import annotations

import re
from types import SimpleNamespace

from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import update

from tandem.cloud.access import accounts
from tandem.cloud.console import fleet
from tandem.cloud.db import engine as database
from tandem.cloud.scheduling.status import GatewayStatus
from tandem.tools.pki import Identity
from tandem.wire.gwrequest import MEDIA_TYPE, sign_request
from tandem.wire.resources import Resources, Status, resources_to_plain, status_to_plain

PASSWORD = "correct horse battery staple"
INTERVAL_MS = 5000


def report(client: FlaskClient, identity: Identity, kit: SimpleNamespace, *, outbox: int,
           load: float = 0.4, link_up: bool = True) -> None:
    """Send a signed status report as the gateway's cloud link does."""
    t = kit.now_ms()
    resources = Resources(identity.name, "plant-a", 4, 1.2, 4 << 30, 10 << 30, (), 2.5e6, 0.04)
    status = Status(identity.name, t, load, 1 << 30, 0, 0.0, 0, outbox, 0.04, 2.4e6, link_up)
    body = {"resources": resources_to_plain(resources), "status": status_to_plain(status),
            "interval_ms": INTERVAL_MS}
    signed = sign_request("gateway-status", identity.name, body, t, kit.signer_of(identity))
    answer = client.post("/edge/v1/status", data=signed, headers={"Content-Type": MEDIA_TYPE})
    assert answer.status_code == 200, answer.json


def signed_in(app: Flask, kit: SimpleNamespace, role: str) -> FlaskClient:
    with database.sessions(app).begin() as session:
        accounts.add_user(session, f"{role}-1", role, PASSWORD, kit.now_ms())
    client = app.test_client()
    token = re.search(r'name="csrf_token" value="([^"]+)"', client.get("/login").text)
    assert token is not None
    assert client.post("/login", data={"user": f"{role}-1", "password": PASSWORD,
                                       "csrf_token": token.group(1)}).status_code == 302
    return client


def gateway_rows(page: str) -> dict[str, str]:
    """Each gateway's <tr> on the gateways page, by name."""
    found = re.findall(r'(<tr class="gateway[^"]*" data-gateway="([^"]+)".*?</tr>)', page, re.S)
    return {name: row for row, name in found}


def test_each_gateway_shows_its_backlog_load_and_link_and_the_degraded_are_marked(
        app, anonymous, pki, kit):
    report(anonymous, pki.gateway, kit, outbox=3)
    report(anonymous, pki.other_gateway, kit, outbox=fleet.DEGRADED_BACKLOG + 15, load=1.7,
           link_up=False)
    rows = gateway_rows(signed_in(app, kit, "viewer").get("/admin/console_gateways/").text)
    healthy, degraded = rows["gw-01"], rows["gw-02"]
    assert 'data-health="ok"' in healthy and "table-warning" not in healthy
    assert '<td class="outbox">3</td>' in healthy and '<td class="load">0.40</td>' in healthy
    assert "up, rtt 40 ms, 2400 kB/s" in healthy
    assert 'data-health="degraded"' in degraded and "table-warning" in degraded
    assert "link down; outbox backlog 25 batches</small>" in degraded
    assert '<td class="load">1.70</td>' in degraded  # shown, but busy is not degraded
    assert 'data-health="no report"' in rows["gw-old"]


def test_a_gateway_whose_reports_stopped_is_marked_unreachable(app, anonymous, pki, kit):
    report(anonymous, pki.gateway, kit, outbox=0)
    after = app.config["TANDEM"].scheduling.unreachable_after
    with database.sessions(app).begin() as session:  # as if its last report were that old
        session.execute(update(GatewayStatus).values(
            received_ms=kit.now_ms() - after * INTERVAL_MS - 60_000))
    page = signed_in(app, kit, "viewer").get("/admin/console_gateways/").text
    shown = gateway_rows(page)["gw-01"]
    assert 'data-health="unreachable"' in shown and "badge-danger" in shown
    assert re.search(r"no report for (7[5-9]|8\d) s", shown)


def test_the_list_filters_by_health(app, anonymous, pki, kit):
    report(anonymous, pki.other_gateway, kit, outbox=0, link_up=False)
    viewer = signed_in(app, kit, "viewer")
    assert set(gateway_rows(viewer.get("/admin/console_gateways/").text)) == {
        "gw-01", "gw-02", "gw-old"}
    page = viewer.get("/admin/console_gateways/?q=degraded").text
    assert list(gateway_rows(page)) == ["gw-02"]
