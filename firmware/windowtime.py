# The node's own time per window (ticks_us), for `tandem bench node`: sampling
# with its features, report encoding, and the link send (DTLS record + UDP),
# each kept as count, total and worst. Small lists: no allocation per call.
import time

from micropython import const

FEATURES = const(0)
ENCODE = const(1)
SEND = const(2)
_NAMES = ("features", "encode", "send")
# An ESP32's small ints end at 2**30; a total past it would be a bigint allocated
# on every window (after about two weeks of 1 ms a second). At this mark the total
# and its weight are halved together: the mean stays, nothing is allocated.
_HALVE_AT = const(1 << 28)

ticks_us = time.ticks_us
ticks_diff = time.ticks_diff


class WindowTime:
    def __init__(self):
        self.count = [0, 0, 0]
        self.total = [0, 0, 0]
        self.weight = [0, 0, 0]  # the calls `total` still stands for
        self.worst = [0, 0, 0]

    def add(self, part, t0):
        # Charge the time since t0 (a ticks_us value) to part.
        us = ticks_diff(ticks_us(), t0)
        self.count[part] += 1
        total = self.total[part] + us
        weight = self.weight[part] + 1
        if total >= _HALVE_AT:
            total >>= 1
            weight = (weight + 1) >> 1
        self.total[part] = total
        self.weight[part] = weight
        if us > self.worst[part]:
            self.worst[part] = us

    def summary(self):
        out = {}
        for i in range(3):
            w = self.weight[i]
            out[_NAMES[i]] = {"n": self.count[i], "mean_us": self.total[i] // w if w else 0,
                              "max_us": self.worst[i]}
        return out
