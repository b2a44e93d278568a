"""Console lists paginate and filter; alarms ingested through the signed-batch path are charted
and labelled (audited, and visible to the label API); the audit chain is verified on demand."""

from __future__ import annotations

import re

from sqlalchemy import text

from tandem.cloud.access import accounts
from tandem.cloud.audit import chain
from tandem.cloud.console.view import PER_PAGE, utc_input
from tandem.cloud.db import engine as database
from tandem.cloud.fleet import registry, tokens

PASSWORD = "correct horse battery staple"


def signed_in(app, kit, role: str = "operator"):
    with database.sessions(app).begin() as session:
        accounts.add_user(session, f"{role}-1", role, PASSWORD, kit.now_ms())
    client = app.test_client()
    token = csrf_token(client.get("/login").text)
    assert client.post("/login", data={"user": f"{role}-1", "password": PASSWORD,
                                       "csrf_token": token}).status_code == 302
    return client


def csrf_token(html: str) -> str:
    match = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert match
    return match.group(1)


def rows(html: str) -> list[str]:
    body = html.split('id="rows"', 1)[1].split("</tbody>", 1)[0]
    return re.findall(r"<tr[^>]*><td>([^<]+)</td>", body)


def test_nodes_paginate_and_filter(app, kit):
    now = kit.now_ms()
    with database.sessions(app).begin() as session:
        registry.claim_devices(session, "gw-01", [f"node-{i:03}" for i in range(120)], now)
        registry.claim_devices(session, "gw-02", ["pump-a", "pump-b"], now)
    client = signed_in(app, kit, "viewer")
    first = client.get("/admin/console_nodes/").text
    assert len(rows(first)) == PER_PAGE and "page 1 of 3 (122 rows)" in first
    last = client.get("/admin/console_nodes/?page=3").text
    assert len(rows(last)) == 122 - 2 * PER_PAGE and 'rel="next"' not in last
    assert "page 3 of 3" in client.get("/admin/console_nodes/?page=99").text  # clamped
    assert "page 1 of 3" in client.get("/admin/console_nodes/?page=x").text
    assert rows(client.get("/admin/console_nodes/?q=PUMP").text) == ["pump-a", "pump-b"]
    assert rows(client.get("/admin/console_nodes/?q=node-11").text) == [
        f"node-11{i}" for i in range(10)]


def test_gateways_show_group_nodes_and_last_batch(app, client, kit, pki):
    assert kit.post(client, kit.envelope(pki.gateway, 1, [kit.summary()])).status_code == 200
    operator = signed_in(app, kit)
    page = operator.get("/admin/console_gateways/").text
    gw01 = page.split("<td>gw-01</td>", 1)[1].split("</tr>", 1)[0]
    assert re.findall(r"<td>([^<]*)</td>", gw01)[:4] == ["active", "default", "1", "1"]
    assert "<time" in gw01  # last batch received
    assert rows(operator.get("/admin/console_gateways/?q=revoked").text) == ["gw-old"]


def test_an_ingested_alarm_is_charted_and_labelled(app, client, kit, pki):
    now = kit.now_ms()
    t0 = now - 600_000
    records = [kit.summary(t0_ms=t0 + i * 60_000, mean=20.0 + i) for i in range(5)]
    alarm_t = t0 + 150_000
    records.append(kit.event(t_ms=alarm_t, name="overheat"))
    assert kit.post(client, kit.envelope(pki.gateway, 1, records)).status_code == 200
    operator = signed_in(app, kit)
    page = operator.get("/admin/console_alarms/?device=dev-1&hours=1").text
    assert 'data-channel="temp"' in page and "<svg" in page
    assert page.count('class="alarm-marker"') == 1 and f'data-t="{alarm_t}"' in page
    response = operator.post("/admin/console_alarms/label", data={
        "csrf_token": csrf_token(page), "device": "dev-1", "name": "overheat",
        "t_ms": str(alarm_t), "label": "false_alarm", "note": "door open", "hours": "1"})
    assert response.status_code == 302
    after = operator.get(response.location).text
    assert "labelled false alarm" in after and "label-given" in after
    labels = client.get("/api/v1/labels?device=dev-1").json["labels"]
    assert [(lb["alarm_name"], lb["alarm_t_ms"], lb["label"], lb["note"], lb["created_by"])
            for lb in labels] == [("overheat", alarm_t, "false_alarm", "door open",
                                   "user:operator-1")]
    with database.read_session(app) as session:
        assert [e.actor for e in chain.entries(session) if e.event == "label.add"] == [
            "user:operator-1"]


def test_the_chart_shows_a_chosen_from_to_range_not_only_the_last_hours(app, client, kit, pki):
    t0 = kit.now_ms() - 3 * 24 * 3600_000  # three days ago: outside the last 24 h
    records = [kit.summary(t0_ms=t0 + i * 60_000, mean=20.0 + i) for i in range(5)]
    records.append(kit.event(t_ms=t0 + 150_000, name="overheat"))
    assert kit.post(client, kit.envelope(pki.gateway, 1, records)).status_code == 200
    viewer = signed_in(app, kit, "viewer")
    assert "No summaries of dev-1 in this range" in viewer.get(
        "/admin/console_alarms/?device=dev-1&hours=24").text
    start, end = utc_input(t0 - 3600_000), utc_input(t0 + 3600_000)
    page = viewer.get(f"/admin/console_alarms/?device=dev-1&start={start}&end={end}").text
    assert 'data-channel="temp"' in page and page.count('class="alarm-marker"') == 1
    assert f'name="start" value="{start}"' in page and f'name="end" value="{end}"' in page
    label_form = page.split('class="form-inline label-form"', 1)[1].split("</form>", 1)[0]
    assert f'name="start" value="{start}"' in label_form  # labelling keeps the range
    later = utc_input(t0 + 7200_000)
    assert "No summaries" in viewer.get(
        f"/admin/console_alarms/?device=dev-1&start={end}&end={later}").text
    backwards = viewer.get(f"/admin/console_alarms/?device=dev-1&start={end}&end={start}").text
    assert "give a range as from &lt; to (UTC)" in backwards
    assert "showing the last 24 h" in backwards and "No summaries" in backwards


def test_a_bad_label_is_refused_with_a_message_and_stores_nothing(app, client, kit):
    operator = signed_in(app, kit)
    token = csrf_token(operator.get("/admin/console_alarms/").text)
    response = operator.post("/admin/console_alarms/label", data={
        "csrf_token": token, "device": "dev-1", "name": "overheat", "t_ms": "soon",
        "label": "maybe"}, follow_redirects=True)
    assert "label not saved" in response.text
    assert client.get("/api/v1/labels").json["labels"] == []


def test_viewers_cannot_label(app, kit):
    viewer = signed_in(app, kit, "viewer")
    token = csrf_token(viewer.get("/admin/console_alarms/").text)
    response = viewer.post("/admin/console_alarms/label", data={
        "csrf_token": token, "device": "dev-1", "name": "x", "t_ms": "1", "label": "fault"})
    assert response.status_code == 403


def test_audit_log_filters_and_verifies_its_chain(app, kit):
    admin = signed_in(app, kit, "admin")
    page = admin.get("/admin/console_audit/?q=login").text
    assert "login.ok" in page and "user.add" not in page
    response = admin.post("/admin/console_audit/verify", data={"csrf_token": csrf_token(page)},
                          follow_redirects=True)
    assert "audit chain verified" in response.text
    with database.engine(app).begin() as conn:  # someone with database access, triggers off
        conn.execute(text("DROP TRIGGER audit_log_no_update"))
        conn.execute(text("UPDATE audit_log SET actor = 'user:mallory' WHERE seq = 1"))
    response = admin.post("/admin/console_audit/verify", data={"csrf_token": csrf_token(page)},
                          follow_redirects=True)
    assert "audit chain broken at row 1" in response.text


def test_an_operator_issues_an_installer_token_shown_once(app, kit):
    operator = signed_in(app, kit)
    token = csrf_token(operator.get("/admin/console_enrol/").text)
    page = operator.post("/admin/console_enrol/issue", follow_redirects=True, data={
        "csrf_token": token, "gateway": "gw-new", "group": "plant-a", "hours": "1"}).text
    secret = re.search(r"\(shown once\): (tdi_[\w-]+)", page)
    assert secret is not None and rows(page) == ["gw-new"]
    assert secret.group(1) not in operator.get("/admin/console_enrol/").text
    with database.read_session(app) as session:
        grant = tokens.find_grant(session, secret.group(1), kit.now_ms())
        assert grant is not None and (grant.gateway, grant.group) == ("gw-new", "plant-a")
        assert [e.actor for e in chain.entries(session) if e.event == "enrol.token"] == [
            "user:operator-1"]
    refused = operator.post("/admin/console_enrol/issue", follow_redirects=True, data={
        "csrf_token": token, "gateway": "no spaces", "hours": "1"}).text
    assert "no token issued: gateway name" in refused and rows(refused) == ["gw-new"]
