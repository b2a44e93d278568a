# One CoAP confirmable request at a time (NSTART 1): a report (POST /r), a
# command poll (GET /c) or one block of a raw snippet (POST /raw; those two
# are loaded by coap_blocks.py). Fresh
# message ID and token per exchange, RFC 7252 retransmission timing, matching
# of piggybacked and separate responses. Decides what a datagram means; does
# no I/O.
import os
import time

from micropython import const

import coap

IGNORED = const(0)
PENDING = const(1)  # empty ACK: the response will come separately
RESPONSE = const(2)
RESET = const(3)

# What the loaded request is.
REPORT = const(0)
COMMAND = const(1)
RAW = const(2)
_BLOCK_OVERHEAD = const(32)  # header, token, Uri-Path, CF, Block1, Size1, marker

_RANDOM_NUM = const(3)  # ACK_RANDOM_FACTOR 1.5 = 3/2
_RANDOM_DEN = const(2)

ticks_add = time.ticks_add
ticks_diff = time.ticks_diff


class Exchange:
    def __init__(self, payload_max, ack_timeout_ms, max_retransmit, block_max=0):
        self.tx = bytearray(max(coap.REQUEST_OVERHEAD + payload_max, _BLOCK_OVERHEAD + block_max))
        self.kind = REPORT
        self.tx_len = 0
        self.ctl = bytearray(4)  # an empty ACK or RST to send back
        self.ctl_len = 0
        self._ack_timeout = ack_timeout_ms
        self._max_retransmit = max_retransmit
        seed = os.urandom(6)
        self.mid = (seed[4] << 8) | seed[5]
        self.token = bytearray(seed[:coap.TOKEN_LEN])
        self.active = False  # a transmission is awaiting its answer
        self.loaded = False  # a report is in tx (sent or not yet)
        self.seq = 0
        self.sent_at = 0
        self.deadline = 0
        self._timeout = 0
        self.attempt = 0
        self._last_reply_mid = -1
        self.code = 0
        self.body = 0  # payload offset of the response
        self.why = None  # why a datagram was ignored

    def load(self, buf, off, n, seq):
        # Takes the report at buf[off:off+n] (the outbox's oldest): from now
        # on the exchange owns it until it is answered.
        self.seq = seq
        self.kind = REPORT
        self.loaded = True
        self.tx_len = coap.build_post_r(self.tx, 0, self.token, buf, off, n)
        self.renew()

    def renew(self):
        # Fresh MID and token for a new exchange of the loaded report (after
        # a reconnect or a 5.03); the payload (seq, boot) stays the same.
        self.mid = (self.mid + 1) & 0xFFFF
        t = self.token
        for i in range(coap.TOKEN_LEN - 1, -1, -1):  # increment as a counter
            t[i] = (t[i] + 1) & 0xFF
            if t[i]:
                break
        coap.restamp(self.tx, self.mid, t)

    def request(self):
        return memoryview(self.tx)[:self.tx_len]

    def payload(self):
        return memoryview(self.tx)[coap.REQUEST_OVERHEAD:self.tx_len]

    def start(self, now):
        # First transmission done: initial timeout is random in
        # [ACK_TIMEOUT, ACK_TIMEOUT * ACK_RANDOM_FACTOR].
        self.active = True
        self.attempt = 0
        self.sent_at = now
        spread = self._ack_timeout * (_RANDOM_NUM - _RANDOM_DEN) // _RANDOM_DEN
        self._timeout = self._ack_timeout + spread * os.urandom(1)[0] // 255
        self.deadline = ticks_add(now, self._timeout)

    def due(self, now):
        return self.active and ticks_diff(now, self.deadline) >= 0

    def next_attempt(self, now):
        # True: send the same request again now; False: give up.
        if self.attempt >= self._max_retransmit:
            self.active = False
            return False
        self.attempt += 1
        self._timeout *= 2
        self.deadline = ticks_add(now, self._timeout)
        return True

    def control(self):
        return memoryview(self.ctl)[:self.ctl_len]

    def on_datagram(self, data, now):
        # Classifies one decrypted datagram; sets ctl_len when an empty
        # ACK/RST must be sent back.
        self.ctl_len = 0
        try:
            mtype, code, mid, token, body = coap.parse(data)
        except ValueError as e:
            return self._ignore(e)
        if mtype == coap.ACK or mtype == coap.RST:
            if not self.active or mid != self.mid:
                return self._ignore("unrelated mid %d" % mid)
            if mtype == coap.RST:
                self.active = False
                return RESET
            if code == coap.EMPTY:
                self._wait_separate(now)
                return PENDING
            if token != self.token:
                return self._ignore("token")
            return self._response(code, body)
        # CON/NON from the gateway: a separate response, or a request the
        # node does not serve (answered with RST so it is not resent).
        is_response = code >> 5 >= 2
        if mtype == coap.CON:
            self.ctl_len = coap.build_empty(self.ctl, coap.ACK if is_response else coap.RST, mid)
        if is_response and self.active and token == self.token and mid != self._last_reply_mid:
            self._last_reply_mid = mid
            return self._response(code, body)
        return self._ignore("unexpected mid %d" % mid)

    def _wait_separate(self, now):
        # Stop retransmitting; allow as long as all retransmissions would.
        self.attempt = self._max_retransmit
        self.deadline = ticks_add(now, self._ack_timeout << (self._max_retransmit + 1))

    def _response(self, code, body):
        self.active = False
        self.code = code
        self.body = body
        return RESPONSE

    def _ignore(self, why):
        self.why = why
        return IGNORED
