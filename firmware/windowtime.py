# The node's own time per window (ticks_us), for `tandem bench node`: sampling
# with its features, report encoding, and the link send (DTLS record + UDP),
# each kept as count, total and worst. Three small lists: no allocation per call.
import time

from micropython import const

FEATURES = const(0)
ENCODE = const(1)
SEND = const(2)
_NAMES = ("features", "encode", "send")

ticks_us = time.ticks_us
ticks_diff = time.ticks_diff


class WindowTime:
    def __init__(self):
        self.count = [0, 0, 0]
        self.total = [0, 0, 0]
        self.worst = [0, 0, 0]

    def add(self, part, t0):
        # Charge the time since t0 (a ticks_us value) to part.
        us = ticks_diff(ticks_us(), t0)
        self.count[part] += 1
        self.total[part] += us
        if us > self.worst[part]:
            self.worst[part] = us

    def summary(self):
        out = {}
        for i in range(3):
            n = self.count[i]
            out[_NAMES[i]] = {"n": n, "mean_us": self.total[i] // n if n else 0,
                              "max_us": self.worst[i]}
        return out
