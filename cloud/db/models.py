"""Every module that defines tables, imported here so `metadata` holds the cloud's whole schema.

Alembic's environment (`cloud/db/migrations/env.py`) compares migrations
against `metadata`, and so does the test that fails when a model changed
without a revision. A new module with tables is added to MODULES.
"""

from __future__ import annotations

from types import ModuleType

from sqlalchemy import MetaData

from tandem.cloud.access import accounts, throttle
from tandem.cloud.audit import chain, refusals
from tandem.cloud.db.base import Base
from tandem.cloud.fleet import registry, tokens
from tandem.cloud.ingest import sealed
from tandem.cloud.labels import store as label_store
from tandem.cloud.live import store as live_store
from tandem.cloud.models import feedback as model_feedback
from tandem.cloud.models import registry as model_registry
from tandem.cloud.models import rollout as model_rollout
from tandem.cloud.policy import store as policy_store
from tandem.cloud.raw import store as raw_store
from tandem.cloud.scheduling import status as scheduling_status
from tandem.cloud.scheduling import strategy as scheduling_strategy
from tandem.cloud.tasks import ledger as task_ledger
from tandem.cloud.timeseries import sql as timeseries_sql

MODULES: tuple[ModuleType, ...] = (registry, tokens, accounts, throttle, chain, refusals, sealed,
                                   policy_store, raw_store, timeseries_sql, label_store,
                                   model_registry, model_feedback, model_rollout,
                                   scheduling_status, scheduling_strategy, task_ledger,
                                   live_store)

metadata: MetaData = Base.metadata
