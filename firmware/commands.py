# Commands from the gateway (docs/protocol.md section 3): the node polls
# GET /c?a=<last id applied> every poll_ms; a 2.05 answer carries a CBOR map
# {"id": n, ...settings} applied once per id, all or nothing. Anything
# malformed is counted and ignored; the node keeps running as it was.
import time

import coap_blocks as coap

ticks_add = time.ticks_add
ticks_diff = time.ticks_diff
PATH = b"c"
# key -> type; a command holds "id" and any of these.
_FIELDS = {"rate_hz": int, "samples": int, "raw": bool, "relay": bool, "led": bool,
           "buzzer_ms": int, "alarm": dict}


class Commands:
    def __init__(self, poll_ms, now):
        self.poll_ms = poll_ms
        self.due_at = now
        self.last_id = 0
        self.applied = 0
        self.bad = 0
        self.why = None

    def due(self, now):
        return ticks_diff(now, self.due_at) >= 0

    def query(self):
        return ("a=%d" % self.last_id).encode()

    def polled(self, now):
        self.due_at = ticks_add(now, self.poll_ms)

    def decode(self, code, data, body):
        # The command in a response, or None: nothing to do, or malformed
        # (then counted in bad, with the reason in why).
        if code != coap.CONTENT or body >= len(data):
            return None
        from cbor_decode import loads

        try:
            cmd = loads(memoryview(data)[body:])
        except (ValueError, UnicodeError) as e:
            return self._bad("cbor: %s" % e)
        if not isinstance(cmd, dict):
            return self._bad("not a map")
        if not cmd:
            return None
        cid = cmd.get("id")
        if not isinstance(cid, int) or isinstance(cid, bool) or cid < 1:
            return self._bad("id")
        for key, value in cmd.items():
            kind = _FIELDS.get(key)
            if kind is not None and (type(value) is not kind):
                return self._bad(key)
        alarm = cmd.get("alarm")
        if alarm is not None and not (isinstance(alarm.get("active"), bool)
                                      and isinstance(alarm.get("sev", 0), int)):
            return self._bad("alarm")
        if cid <= self.last_id:
            return None  # applied before; the gateway has not seen our ack yet
        return cmd

    def _bad(self, why):
        self.bad += 1
        self.why = why
        return None

    def apply(self, cmd, sensors, board, raw):
        # Sensor settings first: if one is refused nothing else changes.
        # Returns the list of keys applied.
        try:
            if "rate_hz" in cmd or "samples" in cmd:
                sensors.configure(cmd.get("rate_hz", sensors.rate_hz), cmd.get("samples", sensors.n))
        except (AttributeError, ValueError) as e:  # AttributeError: basic sensors
            self.last_id = cmd["id"]  # refused for good: do not ask again
            return self._bad("refused %s" % e)
        if cmd.get("raw") and raw is not None:
            raw.want()
        if "relay" in cmd:
            board.relay(cmd["relay"])
        if "led" in cmd:
            board.led(cmd["led"])
        if "buzzer_ms" in cmd:
            board.buzz(cmd["buzzer_ms"])
        alarm = cmd.get("alarm")
        if alarm is not None:
            board.led(alarm["active"])
            board.buzz(2000 if alarm["active"] and alarm.get("sev", 0) >= 2 else 0)
        self.last_id = cmd["id"]
        self.applied += 1
        return [k for k in cmd if k != "id"]
