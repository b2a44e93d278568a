# The node's coordinator: samples on schedule into the outbox and sends the
# oldest unacknowledged report over the DTLS link, reconnecting with backoff
# when the link fails. One thread, one poll loop; nothing in it waits past
# the next sample time. fieldnode.py extends it (sampling bursts, commands,
# raw uploads, flash spill) for nodes configured to use those.
import gc
import select
import time

from micropython import const

import coap
import exchange
from backoff import Backoff
from outbox import Outbox
from report import ReportEncoder
from windowtime import ENCODE, FEATURES, SEND, WindowTime, ticks_us

_DOWN = const(0)
_HANDSHAKE = const(1)
_UP = const(2)
_HANDSHAKE_STEP_MS = const(100)  # re-drive the handshake for its own timers
_MAX_RECORDS_PER_WAKE = const(16)  # bounded: a flood cannot starve sampling

ticks_ms = time.ticks_ms
ticks_add = time.ticks_add
ticks_diff = time.ticks_diff


class Node:
    def __init__(self, cfg, board, link, log, sensors=None):
        # sensors: channels and sample(seq, out); the board's own when None.
        self.cfg = cfg
        self.board = board
        self.sensors = sensors or board
        self.link = link
        self.log = log
        self.boot = board.boot_id()
        self.encoder = ReportEncoder(self.sensors.channels)
        self.outbox = Outbox(cfg.outbox, self.encoder.max_size)
        self.ex = exchange.Exchange(self.encoder.max_size, cfg.ack_timeout_ms, cfg.max_retransmit)
        self.values = [0.0] * len(self.sensors.channels)
        self.backoff = Backoff(cfg.backoff_min_ms, cfg.backoff_max_ms)
        self.poller = select.poll()
        self.state = _DOWN
        self.seq = 0
        self.acked = 0
        self.ignored = 0
        self.peak_heap = 0
        self.retry_at = ticks_ms()
        self.hold_until = self.retry_at  # after 5.03/4.03: quiet until then
        self.opened_at = 0
        self.next_sample = self.retry_at  # run() restarts the schedule
        self.backlog = False  # records may still wait inside mbedtls
        self.bus = None  # optional Modbus RTU slave (modbus_node.NodeBus), served every loop
        self.timing = WindowTime()  # features, encode, send: the node's cost per window
        # A sensor that samples in real time (a burst) times its own features, not its waits.
        self._sensor_timed = hasattr(self.sensors, "timing")
        if self._sensor_timed:
            self.sensors.timing = self.timing

    def attach_bus(self, bus):
        self.bus = bus
        bus.attach(self)

    def run(self):
        self.log.always("boot", device=self.cfg.device_id, boot=self.boot,
                        board=self.cfg.board, channels=list(self.sensors.channels))
        self.next_sample = ticks_ms()
        limit = self.cfg.max_reports
        while not limit or self.acked < limit:
            now = ticks_ms()
            self.board.feed(now)
            if ticks_diff(now, self.next_sample) >= 0:
                self.collect_garbage()
                self._sample(now)
                now = ticks_ms()  # a burst took time
            self._service(now)
            self._wait(now)
        self.link.close()

    def collect_garbage(self):
        # Once a period: the heap in use just before collecting is the
        # high-water mark that matters on a small board.
        used = gc.mem_alloc()
        if used > self.peak_heap:
            self.peak_heap = used
        gc.collect()

    def _sample(self, now):
        self.seq += 1
        t = self.board.now_ms()
        t0 = ticks_us()
        self.sensors.sample(self.seq, self.values)
        if not self._sensor_timed:
            self.timing.add(FEATURES, t0)
        off, dropped = self.outbox.reserve()
        if dropped:
            self.log.warn("dropped", seq=dropped, reason="outbox full")
        t0 = ticks_us()
        end = self.encoder.encode(self.outbox.buf, off, self.seq, self.boot, t, self.values)
        self.timing.add(ENCODE, t0)
        self.outbox.commit(end - off, self.seq)
        if self.bus is not None:
            self.bus.sampled(self.seq, self.sensors.channels, self.values)
        self.next_sample = ticks_add(self.next_sample, self.cfg.period_ms)
        if ticks_diff(now, self.next_sample) >= 0:  # fell behind: skip, no burst
            self.next_sample = ticks_add(now, self.cfg.period_ms)

    def stats(self):
        # Counters and measurements for the exit and stats events (nodestats.py).
        from nodestats import stats

        return stats(self)

    def _wait(self, now):
        wake = self.next_sample
        if self.state == _HANDSHAKE:
            wake = _earliest(wake, ticks_add(now, _HANDSHAKE_STEP_MS))
        elif self.ex.active:
            wake = _earliest(wake, self.ex.deadline)
        elif self._has_work():
            wake = _earliest(wake, self.retry_at if self.state == _DOWN else self.hold_until)
        delay = max(0, ticks_diff(wake, ticks_ms()))
        if self.bus is not None:  # a partial frame ends after 3.5 characters of silence
            delay = self.bus.wait_ms(delay)
        if self.link.sock is None and self.bus is None:
            time.sleep_ms(delay)
        elif self.backlog or self.poller.poll(delay):
            self._receive()
        if self.bus is not None:
            self.bus.poll()

    # -- link --------------------------------------------------------------
    def _service(self, now):
        if self.state == _DOWN and self._has_work() and ticks_diff(now, self.retry_at) >= 0 \
                and self.board.network_ready():
            self._open(now)
        if self.state == _HANDSHAKE:
            self._handshake(now)
        elif self.state == _UP:
            if self.ex.due(now):
                if self.ex.next_attempt(now):
                    self.log.debug("retransmit", seq=self.ex.seq, attempt=self.ex.attempt)
                    self._send(now, self.ex.request())
                else:
                    self._fail(now, "timeout", None)
            elif not self.ex.active and self._has_work() and ticks_diff(now, self.hold_until) >= 0:
                self._prepare(now)
                if self._send(now, self.ex.request()):
                    self.ex.start(now)

    def _open(self, now):
        try:
            self.link.open()
        except (OSError, ValueError) as e:
            self._fail(now, "connect", e)
            return
        self.poller.register(self.link.sock, select.POLLIN)
        self.state = _HANDSHAKE
        self.opened_at = now
        self._prepare(now)

    def _handshake(self, now):
        # mbedtls advances the handshake on each write attempt; the first
        # write that goes through carries the pending request.
        if ticks_diff(now, self.opened_at) >= self.cfg.handshake_timeout_ms:
            self._fail(now, "handshake_timeout", None)
        elif self._send(now, self.ex.request(), "handshake"):
            now = ticks_ms()
            self.state = _UP
            self.log.info("connected", handshake_ms=ticks_diff(now, self.opened_at),
                          gateway=self.cfg.gateway_name)
            self.ex.start(now)

    def _has_work(self):
        return self.ex.loaded or self.outbox.count

    def _prepare(self, now):
        # The report in flight leaves the outbox, so a full outbox never
        # drops it; a failed or refused exchange keeps it for the next try.
        if self.ex.loaded:
            self.ex.renew()
        else:
            buf, off, n, seq = self.outbox.head()
            self.ex.load(buf, off, n, seq)
            self.outbox.pop()

    def _send(self, now, data, what="send"):
        t0 = ticks_us()
        try:
            sent = self.link.send(data)
            if sent and self.state == _UP:  # a handshake's sends are not a window's cost
                self.timing.add(SEND, t0)
            return sent
        except (OSError, ValueError) as e:
            self._fail(now, what, e)
            return False

    def _fail(self, now, what, exc):
        # Any link failure: drop the session, keep the outbox, retry later.
        # The unacknowledged report is resent unchanged after reconnecting.
        delay = self.backoff.next_ms()
        self.log.error("error", error=what, detail=None if exc is None else repr(exc),
                       retry_ms=delay)
        if self.link.sock is not None:
            self.poller.unregister(self.link.sock)
        self.link.close()
        self.state = _DOWN
        self.ex.active = False
        self.retry_at = ticks_add(now, delay)

    # -- receiving ---------------------------------------------------------
    def _receive(self):
        # Drain every record: one UDP datagram may carry several, and once
        # mbedtls has read it the socket no longer polls readable.
        self.backlog = False
        for _ in range(_MAX_RECORDS_PER_WAKE):
            if self.link.sock is None:
                break
            try:
                data = self.link.recv()
            except (OSError, ValueError) as e:  # recv drives the handshake too
                self._fail(ticks_ms(), "handshake" if self.state == _HANDSHAKE else "recv", e)
                break
            if data is None:
                break
            if not data:  # an empty record (OpenSSL sends them); look further
                continue
            now = ticks_ms()
            kind = self.ex.on_datagram(data, now)
            if self.ex.ctl_len:
                self._send(now, self.ex.control())
            if kind == exchange.RESPONSE:
                self._complete(now, data)
            elif kind == exchange.RESET:
                self._fail(now, "reset", None)
            elif kind == exchange.IGNORED:
                self.ignored += 1
                self.log.debug("ignored", why=str(self.ex.why), count=self.ignored)
        else:
            self.backlog = True  # stopped at the bound; more may be waiting

    def _complete(self, now, data):
        code = self.ex.code
        seq = self.ex.seq
        rtt = ticks_diff(now, self.ex.sent_at)
        if code != coap.UNAVAILABLE:
            self.ex.loaded = False  # answered for good: accepted or refused
        if code >> 5 == 2:
            self.acked += 1
            self.backoff.reset()
            self._log_ack(code, rtt)
        elif code == coap.UNAVAILABLE:
            # Gateway queue full: keep the report and try again later.
            delay = self.backoff.next_ms()
            self.hold_until = ticks_add(now, delay)
            self.log.warn("busy", seq=seq, code=coap.code_text(code), retry_ms=delay)
        else:
            # 4.00/4.03/4.13/...: the same bytes cannot succeed; drop them.
            body = self.ex.body
            diag = _text(data[body:]) if body < len(data) else None
            self.log.error("rejected", seq=seq, boot=self.boot, code=coap.code_text(code), diag=diag)
            if code == coap.FORBIDDEN:
                self.hold_until = ticks_add(now, self.backoff.next_ms())

    def _log_ack(self, code, rtt):
        # Decoded from the request that went out, so the log shows the wire.
        if not self.log.enabled("info"):
            return
        from cbor_decode import loads

        r = loads(self.ex.payload())
        self.log.info("ack", seq=r[1], boot=r[2], t=r[3], values=r[4],
                      code=coap.code_text(code), rtt_ms=rtt)


def _text(raw):
    try:
        return bytes(raw).decode()
    except ValueError:  # not UTF-8: show the bytes
        return repr(bytes(raw))


def _earliest(a, b):
    return a if ticks_diff(a, b) <= 0 else b
