# Host board (MicroPython unix port): simulated sensors, the system clock,
# and exiting with a status code where a real board would idle.
import os
import struct
import sys
import time

import sim


class Board:
    channels = sim.CHANNELS

    def __init__(self, cfg):
        self._seed = cfg.seed
        self._scenario = cfg.scenario

    def sample(self, n, out):
        sim.sample(self._seed, self._scenario, n, out)

    def now_ms(self):
        return time.time_ns() // 1000000

    def boot_id(self):
        return struct.unpack("<I", os.urandom(4))[0]

    def network_ready(self):
        return True


def halt(code):
    # On the host a fatal error ends the process; the caller reads the code.
    sys.exit(code)
