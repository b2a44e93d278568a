"""Forgetting old data: time-series retention and the batch-ledger prune.

`tandem-cloud prune` runs `prune` once; `tandem-cloud serve` runs it every
`[timeseries] prune_interval_s` on a PruneTimer. The SQL store deletes rows
older than `summary_retention_days` / `event_retention_days`; InfluxDB's
retention policies expire points on their own. The ledger forgets batches sent
before the replay window: such batches are refused as stale anyway, so their
entries are no longer needed to recognise a replay. With no replay window
(`replay_window_s = 0`, nothing is ever stale) the ledger is kept whole.
Raw snippets and finished raw requests go after `[raw] retention_days`.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from sqlalchemy.orm import Session, sessionmaker

from tandem.cloud.config import CloudConfig
from tandem.cloud.fleet import registry
from tandem.cloud.raw import store as raw_store
from tandem.cloud.timeseries.store import TimeSeriesStore
from tandem.wire import clock

log = logging.getLogger(__name__)


def prune(config: CloudConfig, store: TimeSeriesStore, sessions: sessionmaker[Session],
          now_ms: int | None = None) -> dict[str, int]:
    """Apply retention and prune the ledger; rows deleted per table ("ledger" for batches)."""
    now_ms = clock.now_ms() if now_ms is None else now_ms
    deleted = dict(store.prune(now_ms))
    with sessions.begin() as session:
        deleted |= raw_store.prune(session, now_ms - config.raw.retention_days * 86_400_000)
    window_s = config.ingest.replay_window_s
    if window_s:
        with sessions.begin() as session:
            deleted["ledger"] = registry.prune_ledger(session, now_ms - window_s * 1000)
    return deleted


class PruneTimer:
    """Calls run now and then every interval_s in a thread, until stop(); failures are logged."""

    def __init__(self, run: Callable[[], object], interval_s: float) -> None:
        self._run = run
        self._interval_s = interval_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="tandem-cloud-prune",
                                        daemon=True)

    def start(self) -> None:
        """Start the thread (the first run happens at once)."""
        self._thread.start()

    def stop(self, timeout: float = 30.0) -> None:
        """Ask the thread to end and wait for it (a run in progress finishes first)."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout)

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                log.info("pruned: %s", self._run())
            except Exception:  # the timer must outlive a failing database; next run retries
                log.exception("prune failed; retrying in %g s", self._interval_s)
            self._stop.wait(self._interval_s)
