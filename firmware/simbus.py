# A simulated I2C bus for the host board, with the same methods as
# machine.I2C, and register-level models of the ADXL345 and SHT3x. The real
# drivers run against it unchanged. sim.py's scenarios drive the registers:
# set_window(n) makes window n's machine state (vibration level, bearing
# fault impulses, housing temperature) what the next reads return
# (simsignal.py computes them).
import time

import simsignal as sim
from sht3x import crc8

_ENODEV = 19


class SimI2C:
    def __init__(self, devices):
        self._devices = devices  # address -> device model

    def scan(self):
        return sorted(self._devices)

    def set_window(self, n):
        for dev in self._devices.values():
            dev.set_window(n)

    def _dev(self, addr):
        dev = self._devices.get(addr)
        if dev is None:
            raise OSError(_ENODEV)  # NACK on the address byte
        return dev

    def readfrom_mem_into(self, addr, reg, buf):
        self._dev(addr).read_regs(reg, buf)

    def writeto_mem(self, addr, reg, buf):
        self._dev(addr).write_regs(reg, buf)

    def writeto(self, addr, buf):
        self._dev(addr).command(buf)

    def readfrom_into(self, addr, buf):
        self._dev(addr).read_into(buf)


class SimADXL345:
    # Registers as in the datasheet; reading DATAX0 (6 bytes) returns the
    # next sample of a motor's vibration in full-resolution LSB (1/256 g).
    def __init__(self, seed, scenario):
        self.regs = bytearray(64)
        self.regs[0] = 0xE5
        self._seed = seed
        self._scenario = scenario
        self._rng = seed * 2654435761 % 0x7FFFFFFF + 1
        self.window = 0
        self.k = 0  # sample number within the window
        self.amp = 0
        self.impulse = 0

    def set_window(self, n):
        self.window = n
        self.k = 0
        self.amp, self.impulse = sim.vib_shape(self._seed, self._scenario, n)

    def read_regs(self, reg, buf):
        if reg == 0x32 and len(buf) == 6:
            self._sample(buf)
            return
        for i in range(len(buf)):
            buf[i] = self.regs[(reg + i) & 63]

    def write_regs(self, reg, buf):
        for i in range(len(buf)):
            self.regs[(reg + i) & 63] = buf[i]

    def _noise(self):
        self._rng = (self._rng * 48271) % 0x7FFFFFFF
        return (self._rng >> 8) % 5 - 2  # -2..2 LSB

    def _sample(self, buf):
        if not self.regs[0x2D] & 0x08:
            buf[0:6] = b"\x00\x00\x00\x00\x00\x00"  # standby: no conversions
            return
        k = self.k
        self.k = k + 1
        x, y, z = sim.vib_lsb(self.amp, self.impulse, k)
        _put(buf, 0, x + self._noise())
        _put(buf, 2, y + self._noise())
        _put(buf, 4, z + self._noise())


def _put(buf, i, v):
    v &= 0xFFFF
    buf[i] = v & 0xFF
    buf[i + 1] = v >> 8


class SimSHT3x:
    # Single-shot measurements: a read before 15 ms have passed since the
    # command is NACKed (OSError), like the real chip. crc_every > 0 corrupts
    # every n-th result's CRC, to exercise the driver's check.
    def __init__(self, seed, scenario, crc_every=0):
        self._seed = seed
        self._scenario = scenario
        self._crc_every = crc_every
        self._started = None
        self._reads = 0
        self.window = 0

    def set_window(self, n):
        self.window = n

    def command(self, buf):
        if bytes(buf) == b"\x24\x00":
            self._started = time.ticks_ms()
        elif bytes(buf) != b"\x30\xa2":
            raise OSError(_ENODEV)

    def read_into(self, buf):
        started = self._started
        if started is None or time.ticks_diff(time.ticks_ms(), started) < 15:
            raise OSError(_ENODEV)
        self._started = None
        t_raw, rh_raw = sim.sht_raw(self._seed, self._scenario, self.window)
        buf[0] = t_raw >> 8
        buf[1] = t_raw & 0xFF
        buf[2] = crc8(buf, 0, 2)
        buf[3] = rh_raw >> 8
        buf[4] = rh_raw & 0xFF
        buf[5] = crc8(buf, 3, 2)
        self._reads += 1
        if self._crc_every and self._reads % self._crc_every == 0:
            buf[5] ^= 0x5A


def bus(seed, scenario, crc_every=0):
    # The host board's bus: accelerometer at 0x53, SHT3x at 0x44.
    return SimI2C({0x53: SimADXL345(seed, scenario),
                   0x44: SimSHT3x(seed, scenario, crc_every)})
