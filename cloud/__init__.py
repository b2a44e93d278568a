"""Tandem cloud service: receives signed uplink batches from gateways and serves the data.

`create_app` builds the Flask app: one blueprint per area (`ingest`, `api`,
`login`; `admin` comes next) and one `init_app` per resource (database,
time-series store, metrics, auth). Every route declares who may call it
(cloud/access/auth.py); `auth.init_app` checks that centrally and denies by default.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from flask import Flask

from tandem.cloud import console, datadir, errors, metrics
from tandem.cloud.access import auth, login
from tandem.cloud.access import routes as access_api
from tandem.cloud.config import (
    DEFAULT_SECRET,
    ENV_CONFIG_FILE,
    CloudConfig,
    ConfigError,
    from_mapping,
    load_config,
)
from tandem.cloud.db import engine as database
from tandem.cloud.fleet import admin as fleet_admin
from tandem.cloud.fleet import installer_audit
from tandem.cloud.fleet import routes as enrol_api
from tandem.cloud.ingest import routes as ingest
from tandem.cloud.labels import routes as labels_api
from tandem.cloud.live import routes as live_api
from tandem.cloud.models import routes as models_api
from tandem.cloud.policy import routes as policy_api
from tandem.cloud.query import routes as api
from tandem.cloud.raw import routes as raw_api
from tandem.cloud.scheduling import routes as scheduling_api
from tandem.cloud.tasks import routes as tasks_api
from tandem.cloud.timeseries import store as timeseries

__all__ = ["CloudConfig", "ConfigError", "close_app", "create_app"]


def create_app(config: CloudConfig | Mapping[str, Any] | None = None) -> Flask:
    """Build the app from a CloudConfig, a TOML-shaped mapping, or $TANDEM_CLOUD_CONFIG."""
    resolved = _resolve(config)
    # instance_path given: Flask cannot derive one for a package mapped into a namespace.
    app = Flask(__name__, instance_path=str(resolved.data_dir.absolute()))
    app.config.update(SECRET_KEY=_session_secret(resolved), TANDEM=resolved,
                      MAX_CONTENT_LENGTH=resolved.ingest.max_batch_bytes)
    errors.init_app(app)
    metrics.init_app(app)
    database.init_app(app, resolved)
    timeseries.init_app(app, resolved, database.engine(app))
    auth.init_app(app, resolved)
    app.register_blueprint(ingest.bp)
    app.register_blueprint(api.bp)
    app.register_blueprint(login.bp)
    app.register_blueprint(access_api.bp)
    enrol_api.init_app(app)  # also accepts installer tokens
    app.register_blueprint(policy_api.bp)
    app.register_blueprint(fleet_admin.bp)
    app.register_blueprint(installer_audit.bp)
    raw_api.init_app(app)  # raw snippets on demand (operators and gateways)
    labels_api.init_app(app)  # operator labels for training
    models_api.init_app(app)  # model registry and releases (operators and gateways)
    live_api.init_app(app)  # live values of watched devices (operators and gateways)
    scheduling_api.init_app(app)  # gateway status in, fleet status and strategies out
    tasks_api.init_app(app)  # tasks placed by the scheduler, claimed and answered by gateways
    console.init_app(app)  # the operator console under /admin (last: it declares its routes)
    return app


def close_app(app: Flask) -> None:
    """Release the app's resources (call once the server has stopped)."""
    timeseries.store(app).close()
    database.close(app)


def _session_secret(config: CloudConfig) -> str:
    """The configured secret; development mode replaces the published default with its own."""
    if config.server.secret_key != DEFAULT_SECRET:
        return config.server.secret_key
    if config.production:
        raise config.error("server.secret_key", "refusing to run in production mode with "
                           "the default secret; set one (or TANDEM_CLOUD_SERVER_SECRET_KEY)")
    return datadir.development_secret(config.data_dir)


def _resolve(config: CloudConfig | Mapping[str, Any] | None) -> CloudConfig:
    if isinstance(config, CloudConfig):
        return config
    if config is None:
        return load_config(os.environ.get(ENV_CONFIG_FILE))
    return from_mapping(config)
