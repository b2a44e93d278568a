"""The outbox's admission hook: every record passes the current privacy stage on its way in.

The stage is swapped whole when a new policy arrives (`install`); the swap is
one reference assignment, so a filing in progress on the database thread
finishes under the stage it started with. What the stage did is added to
`privacy_counts` inside the outbox's own transaction, so the report is exact
across crashes: a count exists if and only if its records were filed.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence

from prometheus_client import CollectorRegistry, Counter

from tandem.gateway.privacy.stage import PrivacyStage, Tally
from tandem.gateway.store.database import GatewayDatabase
from tandem.wire.batch import Record
from tandem.wire.policy import PrivacyPolicy

# Tables: gateway/store/migrations.py (the database makes them on open).


class PrivacyGate:
    """Outbox admission: desensitise, count, file."""

    def __init__(self, database: GatewayDatabase, registry: CollectorRegistry | None = None,
                 stage: PrivacyStage | None = None) -> None:
        self.stage = stage or PrivacyStage(PrivacyPolicy())
        self._records = Counter("tandem_gw_privacy_records",
                                "Records filed to the outbox by field and privacy action",
                                ["field", "action"], registry=registry)
        self._values = Counter("tandem_gw_privacy_values",
                               "Values filed to the outbox by field and privacy action",
                               ["field", "action"], registry=registry)

    def install(self, stage: PrivacyStage) -> None:
        """Put stage in force for every record filed from now on."""
        self.stage = stage

    def admit(self, db: sqlite3.Connection, records: Sequence[Record]) -> list[Record]:
        """The records to file instead of records (inside the caller's transaction)."""
        out, tally = self.stage.apply(records)
        _add_counts(db, tally)
        for name, action, count, values in tally.rows():
            self._records.labels(field=name, action=action).inc(count)
            self._values.labels(field=name, action=action).inc(values)
        return out


def _add_counts(db: sqlite3.Connection, tally: Tally) -> None:
    db.executemany(
        "INSERT INTO privacy_counts (field, action, records, vals) VALUES (?, ?, ?, ?) "
        "ON CONFLICT (field, action) DO UPDATE SET records = records + excluded.records, "
        "vals = vals + excluded.vals", tally.rows())


def read_counts(db: sqlite3.Connection) -> list[tuple[str, str, int, int]]:
    """(field, action, records, values) filed so far, by field then action."""
    try:
        rows = db.execute("SELECT field, action, records, vals FROM privacy_counts "
                          "ORDER BY field, action").fetchall()
    except sqlite3.OperationalError:  # a gateway that never ran with privacy counting
        return []
    return [(str(f), str(a), int(r), int(v)) for f, a, r, v in rows]
