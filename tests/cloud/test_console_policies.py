"""Pushing a policy from the console: validated with file:line errors, signed with the cloud's
policy key as the group's next version, audited; refused in words when no key is configured."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from flask import Flask

from tandem.cloud import close_app, create_app
from tandem.cloud.access import accounts
from tandem.cloud.audit import chain
from tandem.cloud.db import engine as database
from tandem.cloud.policy import store as policy_store
from tandem.tools.pki import SiteCA
from tandem.wire.release import open_release
from tests.enrolkit import cloud_mapping, policy_key

PASSWORD = "correct horse battery staple"
POLICY = 'version = 1\n\n[privacy]\ndevice_ids = "pseudonymise"\n'


@pytest.fixture
def keyed_app(tmp_path: Path) -> Iterator[Flask]:
    """A cloud holding a policy signing key."""
    app = create_app(cloud_mapping(tmp_path, SiteCA.create(tmp_path / "pki", "site-a")))
    yield app
    close_app(app)


def signed_in(app: Flask, role: str):
    with database.sessions(app).begin() as session:
        accounts.add_user(session, f"{role}-1", role, PASSWORD, 0)
    client = app.test_client()
    client.post("/login", data={"user": f"{role}-1", "password": PASSWORD,
                                "csrf_token": csrf(client)})
    return client


def csrf(client, path: str = "/login") -> str:
    found = re.search(r'name="csrf_token" value="([^"]+)"', client.get(path).text)
    assert found
    return found.group(1)


def pushed(client, group: str, text: str) -> str:
    response = client.post("/admin/console_policies/push", follow_redirects=True, data={
        "csrf_token": csrf(client, "/admin/console_policies/"), "group": group, "policy": text})
    assert response.status_code == 200
    return response.text


def test_an_operator_pushes_signed_versions_to_a_group(keyed_app, tmp_path):
    operator = signed_in(keyed_app, "operator")
    assert "policy plant-a v1 published" in pushed(operator, "plant-a", POLICY)
    assert "policy plant-a v2 published" in pushed(operator, "plant-a", POLICY)
    with database.read_session(keyed_app) as session:
        newest = policy_store.current(session, "plant-a")
        assert newest is not None and newest.version == 2
        release = open_release(newest.envelope, policy_key(tmp_path).public_key())
        audited = [(e.actor, e.detail) for e in chain.entries(session)
                   if e.event == "policy.push"]
    assert release.version == 2 and release.group == "plant-a"
    assert audited[-1][0] == "user:operator-1" and '"version":2' in audited[-1][1]
    assert "plant-a" in operator.get("/admin/console_policies/").text


def test_a_bad_policy_is_refused_naming_its_line_and_nothing_is_published(keyed_app):
    operator = signed_in(keyed_app, "operator")
    page = pushed(operator, "plant-a", 'version = 1\n\n[privacy]\ndevice_ids = "shout"\n')
    assert "policy not pushed: policy.toml:4: privacy.device_ids" in page
    with database.read_session(keyed_app) as session:
        assert policy_store.groups(session) == []


def test_without_a_signing_key_the_push_is_refused_in_words(app):
    page = pushed(signed_in(app, "operator"), "plant-a", POLICY)
    assert "policy not pushed: no policy signing key" in page


def test_viewers_see_policies_but_get_no_push_form(app):
    viewer = signed_in(app, "viewer")
    assert 'id="push"' not in viewer.get("/admin/console_policies/").text
    response = viewer.post("/admin/console_policies/push", data={
        "csrf_token": csrf(viewer, "/admin/console_policies/"), "group": "g", "policy": POLICY})
    assert response.status_code == 403
