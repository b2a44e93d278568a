# Host board (MicroPython unix port): simulated sensors on a simulated I2C
# bus (simbus.py) so the real drivers run, the system clock, actuators as
# state, and exiting with a status code where a real board would idle.
import os
import struct
import sys
import time

import sim


class Board:
    channels = sim.CHANNELS  # the "basic" sensor model

    def __init__(self, cfg):
        self._seed = cfg.seed
        self._scenario = cfg.scenario
        self._crc_every = cfg.sht_crc_every
        self._def = cfg.board_def
        self._bus = None
        self.relay_on = False
        self.led_on = False
        self.buzz_until = None

    def sample(self, n, out):
        sim.sample(self._seed, self._scenario, n, out)

    def i2c(self):
        if self._bus is None:
            import simbus

            self._bus = simbus.bus(self._seed, self._scenario, self._crc_every)
        return self._bus

    def address(self, part, default):
        return self._def.get("i2c", {}).get(part, default)

    def set_window(self, n):
        # The simulated machine moves on to window n (a no-op on hardware).
        self._bus.set_window(n)

    def now_ms(self):
        return time.time_ns() // 1000000

    def boot_id(self):
        return struct.unpack("<I", os.urandom(4))[0]

    def network_ready(self):
        return True

    def relay(self, on):
        self.relay_on = on

    def led(self, on):
        self.led_on = on

    def buzz(self, ms):
        self.buzz_until = time.ticks_add(time.ticks_ms(), ms) if ms > 0 else None

    def feed(self, now):
        # Once per loop turn: the watchdog on a board; the buzzer's timer.
        if self.buzz_until is not None and time.ticks_diff(now, self.buzz_until) >= 0:
            self.buzz_until = None


def halt(code):
    # On the host a fatal error ends the process; the caller reads the code.
    sys.exit(code)
