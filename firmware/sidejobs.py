# The node's side jobs on the link, between reports: polling the gateway for
# commands (commands.py) and uploading raw snippets (rawsend.py). Loaded only
# when node.json enables one of them, so a plain node pays no RAM for it.
import time

import coap
import coap_blocks
import exchange

ticks_diff = time.ticks_diff


class SideJobs:
    def __init__(self, node):
        cfg = node.cfg
        self.node = node
        self.raw = None
        self.commands = None
        self.raw_at = None  # when the last local raw trigger fired
        if cfg.raw_szx >= 0 and node.sensors is not node.board:
            from rawsend import RawUpload

            self.raw = RawUpload(node.sensors.capacity, cfg.raw_szx)
        if cfg.cmd_poll_ms:
            from commands import Commands

            self.commands = Commands(cfg.cmd_poll_ms, time.ticks_ms())

    def block_max(self):
        return 16 << self.raw.szx if self.raw is not None else 0

    def ready(self, now):
        return (self.raw is not None and self.raw.pending) or \
            (self.commands is not None and self.commands.due(now))

    def wake_at(self, wake):
        c = self.commands
        if c is not None and ticks_diff(c.due_at, wake) < 0:
            return c.due_at
        return wake

    def load(self, ex, now):
        # Raw blocks before a command poll (ready() said one of them is due).
        raw = self.raw
        c = self.commands
        if raw is not None and raw.pending:
            raw.load(ex)
        elif c is not None:
            c.polled(now)
            coap_blocks.load_get(ex, b"c", c.query())

    def abort(self, kind):
        # The link failed: a poll is simply redone, a raw upload restarted.
        if kind == exchange.RAW and self.raw is not None:
            self.raw.restart()

    def complete(self, ex, data):
        if ex.kind == exchange.COMMAND:
            self._command(ex, data)
        else:
            self._raw_block(ex, data)

    def _raw_block(self, ex, data):
        import rawsend

        try:
            block1 = coap_blocks.option_uint(data, coap_blocks.OPT_BLOCK1)
        except IndexError:  # an option running past the end: no usable Block1
            block1 = -1
        raw = self.raw
        if raw is None:  # only raw uploads send blocks
            return
        r = raw.on_response(ex.code, block1)
        if r == rawsend.DONE:
            self.node.log.info("raw_sent", seq=raw.seq, bytes=raw.len, code=coap.code_text(ex.code))
        elif r == rawsend.FAILED:
            self.node.log.error("raw_failed", seq=raw.seq, block=raw.num,
                                code=coap.code_text(ex.code))

    def _command(self, ex, data):
        c = self.commands
        if c is None:  # only polls are COMMAND exchanges
            return
        n = self.node
        cmd = c.decode(ex.code, data, ex.body)
        if cmd is not None:
            applied = c.apply(cmd, n.sensors, n.board, self.raw)
            if applied is not None:
                n.log.info("command", id=cmd["id"], applied=applied)
        if c.why is not None:
            n.log.warn("bad_command", why=c.why, count=c.bad)
            c.why = None

    def sampled(self, now, t):
        # After each window: a local trigger (crest factor over the limit,
        # at most once per min_interval_ms), then capture if one is wanted.
        raw = self.raw
        if raw is None:
            return
        n = self.node
        cfg = n.cfg
        crest = max(n.sensors.crests)
        if cfg.raw_crest and crest > cfg.raw_crest and not raw.pending and (
                self.raw_at is None or ticks_diff(now, self.raw_at) >= cfg.raw_every_ms):
            self.raw_at = now
            raw.want()
            n.log.info("raw_trigger", seq=n.seq, crest=crest)
        if raw.capture(n.sensors, n.seq, n.boot, t, n.sensors.scale):
            n.log.info("raw_captured", seq=n.seq, bytes=raw.len)

    def stats(self, s):
        if self.commands is not None:
            s["commands"] = self.commands.applied
            s["bad_commands"] = self.commands.bad
        if self.raw is not None:
            s["raw_sent"] = self.raw.sent
            s["raw_failed"] = self.raw.failed
