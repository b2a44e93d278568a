# The node with everything node.json can switch on beyond plain reports:
# sampling bursts (their window-start lateness measured), command polls and
# raw uploads (sidejobs.py, started at the sample times: poll_ms is rounded
# up to whole periods), and the outbox's flash spill (spill.py). A plain node
# runs node.Node alone and pays no RAM for any of this.
import time

import exchange
from node import Node

ticks_ms = time.ticks_ms
ticks_diff = time.ticks_diff


class FieldNode(Node):
    def __init__(self, cfg, board, link, log, sensors=None):
        super().__init__(cfg, board, link, log, sensors)
        if cfg.spill_bytes:
            from spill import Spill, SpillingOutbox

            size = self.encoder.max_size
            self.outbox = SpillingOutbox(cfg.outbox, size,
                                         Spill(cfg.spill_path, cfg.spill_bytes, size))
        self.jobs = None  # command polls, raw uploads
        if cfg.cmd_poll_ms or cfg.raw_szx >= 0:
            from sidejobs import SideJobs

            self.jobs = SideJobs(self)
            self.ex = exchange.Exchange(self.encoder.max_size, cfg.ack_timeout_ms,
                                        cfg.max_retransmit, self.jobs.block_max())
        self.late_max_ms = 0  # latest start of a sampling window
        import nodestats  # noqa: F401 - compiled now, not into a fragmented heap at exit

    def _sample(self, now):
        late = ticks_diff(now, self.next_sample)
        if late > self.late_max_ms:
            self.late_max_ms = late
        t = self.board.now_ms()
        super()._sample(now)
        if self.jobs is not None:
            self.jobs.sampled(now, t)
        every = self.cfg.stats_every
        if every and self.seq % every == 0:
            self.log.info("stats", **self.stats())

    def _has_work(self):
        return super()._has_work() or (self.jobs is not None and self.jobs.ready(ticks_ms()))

    def _prepare(self, now):
        # Reports first, then side jobs.
        jobs = self.jobs
        if jobs is not None and not self.ex.loaded and not self.outbox.count:
            jobs.load(self.ex, now)
        else:
            super()._prepare(now)

    def _complete(self, now, data):
        jobs = self.jobs
        if self.ex.kind == exchange.REPORT or jobs is None:
            super()._complete(now, data)
        else:
            self.ex.loaded = False
            jobs.complete(self.ex, data)

    def _fail(self, now, what, exc):
        kind = self.ex.kind if self.ex.loaded else exchange.REPORT
        super()._fail(now, what, exc)
        jobs = self.jobs
        if kind != exchange.REPORT and jobs is not None:
            self.ex.loaded = False  # a poll is simply redone, a raw upload restarted
            jobs.abort(kind)
