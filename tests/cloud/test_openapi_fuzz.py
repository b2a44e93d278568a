"""Schemathesis against cloud/openapi.yaml: no generated request gets a 5xx.

Every operation is called in process (WSGI) with an admin's token, with a
bounded number of generated cases so the whole run stays well under a minute.
"""

from __future__ import annotations

from importlib import resources

import pytest
import schemathesis
from flask import Flask
from hypothesis import HealthCheck, Phase, settings
from schemathesis.checks import not_a_server_error

EXAMPLES_PER_OPERATION = 25

# Signed envelopes are opaque bytes to the fuzzer: send them as generated.
schemathesis.serializer.alias("application/cose", "application/octet-stream")
schema = schemathesis.openapi.from_path(
    str(resources.files("cloud").joinpath("openapi.yaml")))


@pytest.fixture
def loaded(app: Flask, pki, kit) -> Flask:
    """app with a batch stored, so queries and exports have rows to return."""
    batch = kit.envelope(pki.gateway, 1, [kit.summary(), kit.event()])
    assert kit.post(app.test_client(), batch).status_code == 200
    return app


@pytest.mark.timeout(60)
@schema.parametrize()
@settings(max_examples=EXAMPLES_PER_OPERATION, deadline=None, derandomize=True,
          phases=[Phase.explicit, Phase.generate], suppress_health_check=list(HealthCheck))
def test_no_generated_request_gets_a_server_error(case, loaded, admin_token, kit):
    case.call_and_validate(app=loaded, headers=kit.bearer(admin_token),
                           checks=[not_a_server_error])
