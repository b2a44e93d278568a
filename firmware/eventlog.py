# Events as JSON lines on stdout, one per event: {"ev": name, ...fields}.
# A print behind a level, so tests and the demo parse what the node did.
import json

LEVELS = {"debug": 0, "info": 1, "warn": 2, "error": 3}


class EventLog:
    def __init__(self, level="info"):
        self.level = LEVELS[level]

    def enabled(self, level):
        return LEVELS[level] >= self.level

    def emit(self, level, ev, fields):
        if LEVELS[level] >= self.level:
            # "ev" first makes the lines readable by eye.
            rest = json.dumps(fields) if fields else "{}"
            print('{"ev": "%s"%s' % (ev, ", " + rest[1:] if len(rest) > 2 else "}"))

    def always(self, ev, **fields):
        # Lifecycle events (boot, fatal, exit) print at any level.
        self.emit("error", ev, fields)

    def debug(self, ev, **fields):
        self.emit("debug", ev, fields)

    def info(self, ev, **fields):
        self.emit("info", ev, fields)

    def warn(self, ev, **fields):
        self.emit("warn", ev, fields)

    def error(self, ev, **fields):
        self.emit("error", ev, fields)
