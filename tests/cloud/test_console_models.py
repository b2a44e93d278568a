"""Models and rollouts in the console: versions with their card's figures and promoted flag,
each group's rollout with its stage, state and last gate's figures; operators pause, resume,
abort and roll back through the API's own functions (same checks, same audit); viewers only look.
"""

from __future__ import annotations

import html
import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select

from tandem.cloud import close_app, create_app
from tandem.cloud.access import accounts
from tandem.cloud.audit import chain
from tandem.cloud.db import engine as database
from tandem.cloud.fleet import tokens
from tandem.cloud.models import feedback, registry, rollout
from tandem.cloud.timestamps import now_ms
from tandem.tools.pki import SiteCA
from tandem.wire.modelrelease import open_manifest
from tests.cloud.conftest import bearer, token_for
from tests.enrolkit import cloud_mapping, policy_key
from tests.modelkit import write_version

PASSWORD = "correct horse battery staple"
PAGE = "/admin/console_models/"
ROLLOUT = {"group": "plant-a", "version": "m-0002", "previous": "m-0001",
           "canaries": ["gw-01"], "wave_size": 1, "limits": {"soak_s": 0}}


@pytest.fixture
def models_app(tmp_path: Path) -> Iterator[Flask]:
    """A cloud with a release signing key, m-0001 (promoted) and its child m-0002 registered."""
    app = create_app(cloud_mapping(tmp_path, SiteCA.create(tmp_path / "pki", "site-a")))
    with database.sessions(app).begin() as session:
        for version, seed, parent, f1 in (("m-0001", 1, None, 0.8), ("m-0002", 2, "m-0001", 0.9)):
            output = write_version(tmp_path / version, version, seed, parent=parent, f1=f1)
            registry.register(session, app.config["TANDEM"], output, "trainer", now_ms())
        registry.promote(session, "m-0001")
        for gateway in ("gw-01", "gw-02"):
            tokens.set_group(session, gateway, "plant-a")
    yield app
    close_app(app)


def signed_in(app: Flask, role: str) -> FlaskClient:
    with database.sessions(app).begin() as session:
        accounts.add_user(session, f"{role}-1", role, PASSWORD, 0)
    client = app.test_client()
    assert client.post("/login", data={"user": f"{role}-1", "password": PASSWORD,
                                       "csrf_token": csrf(client, "/login")}).status_code == 302
    return client


def csrf(client: FlaskClient, path: str = PAGE) -> str:
    found = re.search(r'name="csrf_token" value="([^"]+)"', client.get(path).text)
    assert found
    return found.group(1)


def start_rollout(app: Flask) -> None:
    answer = app.test_client().post("/api/v1/rollouts", json=ROLLOUT,
                                    headers=bearer(token_for(app, "operator")))
    assert answer.status_code == 200, answer.json


def row_of(html: str, css: str, key: str) -> str:
    """The <tr> of a table row marked data-<kind>="key" (up to its end)."""
    return html.split(f'class="{css}', 1)[1].split(f'"{key}"', 1)[1].split("</tr>", 1)[0]


def pass_gate(app: Flask, t_ms: int) -> str:
    """Both gateways report good figures for m-0002 at t_ms, the gate is judged; the new stage."""
    report = {"version": "m-0002", "role": "shadow", "windows": 40, "score_mean": 1.0,
              "score_max": 2.0, "alarms": 1, "errors": 0, "latency_p99_ms": 3.5,
              "latency_bounds_ms": [1.0], "latency": [40]}
    with database.sessions(app).begin() as session:
        for gateway in ("gw-01", "gw-02"):
            feedback.record(session, gateway, {"reports": [report]}, t_ms)
        row = rollout.current(session, "plant-a")
        assert row is not None
        assert rollout.advance(session, row, t_ms + 1) == "passed"
        return row.stage


def act(client: FlaskClient, path: str, **form: str) -> str:
    response = client.post(path, data={"csrf_token": csrf(client), **form},
                           follow_redirects=True)
    assert response.status_code == 200
    return html.unescape(response.text)


def audited(app: Flask, event: str) -> list[tuple[str, dict[str, object]]]:
    with database.read_session(app) as session:
        return [(e.actor, json.loads(e.detail)) for e in chain.entries(session)
                if e.event == event]


def test_versions_show_their_card_figures_and_the_promoted_one(models_app):
    page = signed_in(models_app, "viewer").get(PAGE).text
    versions = re.findall(r'<tr class="version" data-version="([^"]+)"', page)
    assert versions == ["m-0002", "m-0001"]  # newest first
    child, first = row_of(page, "version", "m-0002"), row_of(page, "version", "m-0001")
    assert '<td class="metric-f1">0.900</td>' in child and "<td>m-0001</td>" in child
    assert '<td class="metric-roc_auc">\u2013</td>' in child  # a figure not given
    assert "<td>2.0</td>" in child and "0" * 12 in child  # threshold, dataset hash
    assert "promoted" in first and "promoted" not in child
    assert "No rollout yet" in page


def test_a_rollout_shows_its_stage_state_and_the_figures_of_its_last_gate(models_app):
    start_rollout(models_app)
    assert pass_gate(models_app, now_ms()) == "canary"
    page = signed_in(models_app, "viewer").get(PAGE).text
    shown = row_of(page, "rollout", "plant-a")
    assert 'data-state="running"' in page and '<td class="stage">canary</td>' in shown
    assert '<td class="gate-windows">80</td>' in shown
    assert '<td class="gate-p99_ms">3.5</td>' in shown
    assert '<td class="gate-alarm_rate">0.025</td>' in shown
    assert "gate passed" in page  # the log
    assert "rollout-action" not in page and "rollback-form" not in page  # a viewer's page


def test_an_operator_pauses_resumes_and_aborts_audited_as_through_the_api(models_app):
    start_rollout(models_app)
    operator = signed_in(models_app, "operator")
    control = PAGE + "control"
    assert "plant-a: pause done, now paused" in act(operator, control, group="plant-a",
                                                    action="pause")
    page = act(operator, control, group="plant-a", action="pause")
    assert "rollout of plant-a not changed: cannot pause a rollout that is paused" in page
    assert "now running" in act(operator, control, group="plant-a", action="resume")
    page = act(operator, control, group="plant-a", action="abort")
    assert "now aborted" in page and 'data-state="aborted"' in page
    assert "rollout-action" not in row_of(page, "rollout", "plant-a")  # nothing left to do
    page = act(operator, control, group="plant-a", action="resume")
    assert "not changed: no rollout in progress for group 'plant-a'" in page
    assert "no rollout action 'explode'" in act(operator, control, group="plant-a",
                                                 action="explode")
    shown = models_app.test_client().get("/api/v1/rollouts/plant-a",
                                         headers=bearer(token_for(models_app, "viewer"))).json
    assert shown["state"] == "aborted"
    assert [s["step"] for s in shown["log"]] == ["started", "pause", "resume", "abort"]
    steps = [(actor, detail["step"]) for actor, detail in audited(models_app, "model.rollout")]
    assert steps == [("token:operator-user/t1", "started"), ("user:operator-1", "pause"),
                     ("user:operator-1", "resume"), ("user:operator-1", "abort")]


def test_an_operator_releases_an_earlier_version_as_a_signed_rollback(models_app, tmp_path):
    operator = signed_in(models_app, "operator")
    page = act(operator, PAGE + "rollback", version="m-0001")
    assert "rollback to m-0001 released" in page
    with database.read_session(models_app) as session:
        row = registry.latest_release(session, "m-0001")
        assert row is not None
        release = open_manifest(row.envelope, policy_key(tmp_path).public_key())
    assert release.rollback and release.card.version == "m-0001"
    assert audited(models_app, "model.release") == [
        ("user:operator-1", {"version": "m-0001", "rollback": True})]
    page = act(operator, PAGE + "rollback", version="m-9999")
    assert "no rollback released: no model version m-9999" in page


def test_viewers_cannot_pause_abort_or_roll_back(models_app):
    start_rollout(models_app)
    viewer = signed_in(models_app, "viewer")
    for path, form in (("control", {"group": "plant-a", "action": "abort"}),
                       ("rollback", {"version": "m-0001"})):
        response = viewer.post(PAGE + path, data={"csrf_token": csrf(viewer), **form})
        assert response.status_code == 403, path
    with database.read_session(models_app) as session:
        row = rollout.latest(session, "plant-a")
        assert row is not None and row.state == rollout.RUNNING
        releases = session.scalars(select(registry.ModelReleaseRow)).all()
    assert releases == []  # the rollout keeps its own manifests; no fleet-wide release was made


def test_a_completed_rollout_offers_a_rollback_to_the_version_it_replaced(models_app):
    start_rollout(models_app)
    t = now_ms()
    assert [pass_gate(models_app, t + i * 10) for i in range(3)] == ["canary", "wave:1", "done"]
    page = signed_in(models_app, "operator").get(PAGE).text
    shown = row_of(page, "rollout", "plant-a")
    assert "roll back to m-0001" in shown and 'name="version" value="m-0001"' in shown
    assert "rollout-action" not in shown and 'data-state="completed"' in page


def register_weaker(app: Flask, tmp_path: Path) -> None:
    """m-0003: a child of m-0002 with a held-out f1 (0.7) below the promoted m-0001's (0.8)."""
    output = write_version(tmp_path / "m-0003", "m-0003", 3, parent="m-0002", f1=0.7)
    with database.sessions(app).begin() as session:
        registry.register(session, app.config["TANDEM"], output, "trainer", now_ms())


def promoted_version(app: Flask) -> str:
    with database.read_session(app) as session:
        row = registry.promoted(session, "vibration-ae")
        assert row is not None
        return row.version


GOOD_FORM = {"group": "plant-a", "version": "m-0002", "canaries": "gw-01", "wave_size": "1",
             "soak_s": "0", "min_windows": "1", "max_alarm_rate": "0.05", "max_p99_ms": "50",
             "max_errors": "0", "max_drift": "0.5"}


def field_error(page: str, name: str) -> str:
    found = re.search(rf'class="invalid-feedback" data-field="{name}">([^<]*)<', page)
    return found.group(1) if found else ""


def test_the_promote_form_shows_how_a_version_compares_with_the_promoted_one(models_app):
    page = html.unescape(signed_in(models_app, "operator").get(PAGE).text)
    child = row_of(page, "version", "m-0002")
    assert "f1 0.900 vs 0.800 (m-0001)" in child and "promote-form" in child
    assert "promote-form" not in row_of(page, "version", "m-0001")  # already promoted
    assert 'name="force"' not in page  # forcing is for admins
    assert 'name="force"' in signed_in(models_app, "admin").get(PAGE).text


def test_an_operator_promotes_a_better_version_audited_as_through_the_api(models_app):
    operator = signed_in(models_app, "operator")
    assert "m-0002 promoted" in act(operator, PAGE + "promote", version="m-0002")
    assert promoted_version(models_app) == "m-0002"
    assert audited(models_app, "model.promote") == [
        ("user:operator-1", {"version": "m-0002", "force": False})]


def test_a_version_not_beating_the_promoted_one_is_refused_in_words_unless_an_admin_forces(
        models_app, tmp_path, caplog):
    register_weaker(models_app, tmp_path)
    operator = signed_in(models_app, "operator")
    page = act(operator, PAGE + "promote", version="m-0003")
    refusal = ("m-0003 not promoted: m-0003 (held-out f1 0.7) does not beat the promoted m-0001 "
               "(0.8); an admin may force it")
    assert refusal in page
    assert ("WARNING", f"console: {refusal}") in [(r.levelname, r.getMessage())
                                                   for r in caplog.records]
    page = act(operator, PAGE + "promote", version="m-0003", force="1")
    assert "m-0003 not promoted: only an admin may force a promotion" in page
    assert promoted_version(models_app) == "m-0001" and audited(models_app, "model.promote") == []
    page = act(signed_in(models_app, "admin"), PAGE + "promote", version="m-0003", force="1")
    assert "m-0003 promoted (forced)" in page
    assert promoted_version(models_app) == "m-0003"
    assert audited(models_app, "model.promote") == [
        ("user:admin-1", {"version": "m-0003", "force": True})]


def test_an_operator_releases_a_version_fleet_wide(models_app, tmp_path):
    operator = signed_in(models_app, "operator")
    page = act(operator, PAGE + "release", version="m-0002")
    assert "m-0002 released fleet-wide: gateways fetch it at their next poll" in page
    with database.read_session(models_app) as session:
        row = registry.newest_release(session)
        assert row is not None and row.version == "m-0002"
        release = open_manifest(row.envelope, policy_key(tmp_path).public_key())
    assert not release.rollback and release.card.version == "m-0002"
    assert audited(models_app, "model.release") == [
        ("user:operator-1", {"version": "m-0002", "rollback": False})]
    assert "m-9999 not released: no model version m-9999" in act(operator, PAGE + "release",
                                                                  version="m-9999")


def test_the_rollout_form_comes_with_the_default_stages_and_limits(models_app):
    page = signed_in(models_app, "operator").get(PAGE + "start?version=m-0002").text
    for name, value in (("wave_size", "1"), ("soak_s", "600.0"), ("min_windows", "1"),
                        ("max_alarm_rate", "0.05"), ("max_p99_ms", "50.0"),
                        ("max_errors", "0"), ("max_drift", "0.5")):
        assert re.search(rf'name="{name}" type="number" value="{re.escape(value)}"', page), name
    assert "<option selected>m-0002</option>" in page
    assert '<option value="plant-a">' in page and "plant-a (gw-01, gw-02)" in page  # to pick


def test_a_rollout_form_with_bad_fields_shows_each_error_beside_its_field_and_starts_nothing(
        models_app):
    operator = signed_in(models_app, "operator")
    form = GOOD_FORM | {"canaries": ""}
    page = act(operator, PAGE + "start", **(form | {"soak_s": "ten", "max_errors": "1.5",
                                                     "max_drift": "nan"}))
    assert field_error(page, "soak_s") == "a number"
    assert field_error(page, "max_errors") == "a whole number"
    assert field_error(page, "max_drift") == "a number"
    assert 'name="soak_s" type="number" value="ten"' in page  # what was typed is kept
    page = act(operator, PAGE + "start", **(form | {"soak_s": "-5"}))
    assert field_error(page, "soak_s") == "limit soak_s: a number >= 0, not -5.0"
    page = act(operator, PAGE + "start", **form)
    assert field_error(page, "canaries") == "a rollout needs at least one canary gateway"
    page = act(operator, PAGE + "start", **(GOOD_FORM | {"wave_size": "0"}))
    assert field_error(page, "wave_size") == "waves need at least 1 gateway each"
    page = act(operator, PAGE + "start", **(GOOD_FORM | {"group": ""}))
    assert field_error(page, "group") == "required"
    page = act(operator, PAGE + "start", **(GOOD_FORM | {"version": "m-9999"}))
    assert field_error(page, "version") == "no model version m-9999"
    with database.read_session(models_app) as session:
        assert rollout.latest(session, "plant-a") is None
    assert audited(models_app, "model.rollout") == []


def test_an_operator_starts_a_rollout_from_the_form_audited_as_through_the_api(models_app):
    operator = signed_in(models_app, "operator")
    act(operator, PAGE + "release", version="m-0001")  # what the group runs, and goes back to
    form = GOOD_FORM
    page = act(operator, PAGE + "start", **form)
    assert "rollout of m-0002 to plant-a started in shadow" in page
    shown = row_of(page, "rollout", "plant-a")
    assert 'data-state="running"' in page and '<td class="stage">shadow</td>' in shown
    with database.read_session(models_app) as session:
        row = rollout.latest(session, "plant-a")
        assert row is not None
        assert (row.previous, row.canaries(), row.limits().soak_s) == ("m-0001", ["gw-01"], 0)
    assert audited(models_app, "model.rollout") == [
        ("user:operator-1", {"group": "plant-a", "version": "m-0002", "step": "started"})]
    page = act(operator, PAGE + "start", **form)
    assert field_error(page, "group") == "group 'plant-a' already has a rollout in progress"


def test_the_operator_chooses_what_a_failed_rollout_falls_back_to(models_app, tmp_path):
    operator = signed_in(models_app, "operator")
    act(operator, PAGE + "release", version="m-0001")
    page = html.unescape(operator.get(PAGE + "start?group=plant-a").text)
    assert "what the group runs now (m-0001)" in page  # the default, named
    page = act(operator, PAGE + "start", **(GOOD_FORM | {"previous": "m-0002"}))
    assert field_error(page, "previous") == "m-0002 cannot be its own fall-back version"
    page = act(operator, PAGE + "start", **(GOOD_FORM | {"previous": "m-0404"}))
    assert field_error(page, "previous") == "no model version m-0404"
    with database.read_session(models_app) as session:
        assert rollout.latest(session, "plant-a") is None
    page = act(operator, PAGE + "start", **(GOOD_FORM | {"version": "m-0001",
                                                         "previous": "m-0002"}))
    assert "rollout of m-0001 to plant-a started in shadow" in page
    with database.read_session(models_app) as session:
        row = rollout.latest(session, "plant-a")
        assert row is not None and row.previous == "m-0002" and row.back is not None
        assert open_manifest(row.back, policy_key(tmp_path).public_key()).card.version \
            == "m-0002"


def test_viewers_cannot_promote_release_or_start_a_rollout(models_app):
    viewer = signed_in(models_app, "viewer")
    assert viewer.get(PAGE + "start").status_code == 403
    for path, form in (("promote", {"version": "m-0002"}), ("release", {"version": "m-0002"}),
                       ("start", {"group": "plant-a", "version": "m-0002",
                                  "canaries": "gw-01"})):
        response = viewer.post(PAGE + path, data={"csrf_token": csrf(viewer), **form})
        assert response.status_code == 403, path
    assert promoted_version(models_app) == "m-0001"
    with database.read_session(models_app) as session:
        assert registry.newest_release(session) is None
        assert rollout.latest(session, "plant-a") is None
    assert "promote-form" not in viewer.get(PAGE).text
