# The "accel" sensor set: each report period, a burst of `samples` readings
# of the ADXL345 at `rate_hz` into arrays allocated once, then per-axis
# features (RMS, peak, crest factor, in g) and the SHT3x temperature and
# humidity. The burst loop allocates nothing; its timing error (jitter) goes
# into a histogram for p50/p99/max.
import time
from array import array

from micropython import const

import adxl345
from sht3x import SHT3x

CHANNELS = ("temp", "rh", "vib",
            "ax_rms", "ax_peak", "ax_crest",
            "ay_rms", "ay_peak", "ay_crest",
            "az_rms", "az_peak", "az_crest")
_BUCKET_US = const(10)
_BUCKETS = const(500)  # 0..5 ms in 10 us steps; the last bucket is everything later

ticks_us = time.ticks_us
ticks_add = time.ticks_add
ticks_diff = time.ticks_diff
sleep_us = time.sleep_us


class Jitter:
    # Lateness of each sample against its schedule, in microseconds.
    def __init__(self):
        self.hist = array("I", bytes(4 * _BUCKETS))  # "I" is 4 bytes on every port
        self.count = 0
        self.max_us = 0

    def add(self, late_us):
        b = late_us // _BUCKET_US
        self.hist[b if b < _BUCKETS else _BUCKETS - 1] += 1
        self.count += 1
        if late_us > self.max_us:
            self.max_us = late_us

    def quantile_us(self, per_mille):
        # Upper edge of the bucket holding the given quantile (0 if empty).
        want = (self.count * per_mille + 999) // 1000
        seen = 0
        for b in range(_BUCKETS):
            seen += self.hist[b]
            if seen >= want and seen:
                return min((b + 1) * _BUCKET_US, self.max_us)
        return 0


class VibrationSensors:
    # The "accel" model's sensor set (config_sensing.MODELS names this module).
    channels = CHANNELS

    def __init__(self, board, cfg):
        i2c = board.i2c()
        self._board = board
        self.accel = adxl345.ADXL345(i2c, board.address("adxl345", adxl345.ADDRESS))
        self.thermo = SHT3x(i2c, board.address("sht3x", 0x44))
        self.capacity = cfg.samples
        self.n = cfg.samples
        self.xs = array("h", bytes(2 * self.capacity))
        self.ys = array("h", bytes(2 * self.capacity))
        self.zs = array("h", bytes(2 * self.capacity))
        self.burst_limit_us = cfg.period_ms * 750  # a burst takes at most 3/4 of a period
        self.rate_hz = 0
        self.configure(cfg.rate_hz, cfg.samples)
        self.jitter = Jitter()
        self.errors = 0  # temperature reads that failed (NACK or CRC)
        self.crests = [0.0, 0.0, 0.0]  # of the last window, x y z
        self.scale = adxl345.SCALE_G
        self.timing = None  # the node's windowtime.WindowTime: times the features, not the burst

    def configure(self, hz, n):
        # Rate and samples per window together; ValueError (nothing changed)
        # when the ADXL345 lacks the rate, n exceeds the buffers, or the
        # burst would not fit in 3/4 of a period.
        if not 8 <= n <= self.capacity or n * 1000000 // hz > self.burst_limit_us:
            raise ValueError("samples/rate_hz")
        self.accel.rate(hz)
        self.rate_hz = hz
        self.n = n

    def sample(self, seq, out):
        self._board.set_window(seq)
        try:
            self.thermo.start()  # converts during the burst
            started = True
        except OSError:
            started = False
        self._burst()
        self._temperature(out, started)
        timing = self.timing
        t0 = ticks_us()
        self._features(out)
        if timing is not None:
            timing.add(0, t0)  # windowtime.FEATURES

    def _burst(self):
        xs, ys, zs = self.xs, self.ys, self.zs
        read = self.accel.read
        add = self.jitter.add
        rate = self.rate_hz
        t0 = ticks_us()
        for i in range(self.n):
            due = ticks_add(t0, i * 1000000 // rate)
            wait = ticks_diff(due, ticks_us())
            if wait > 0:
                sleep_us(wait)
            add(max(0, ticks_diff(ticks_us(), due)))
            read(xs, ys, zs, i)

    def _temperature(self, out, started):
        out[0] = out[1] = None  # omitted from the report when unreadable
        if started:
            try:
                t, rh = self.thermo.read()
                out[0] = t / 100
                out[1] = rh / 100
                return
            except (OSError, ValueError):
                pass
        self.errors += 1

    def _features(self, out):
        total = 0.0
        for axis in range(3):
            rms, peak = axis_features((self.xs, self.ys, self.zs)[axis], self.n)
            out[3 + 3 * axis] = rms
            out[4 + 3 * axis] = peak
            crest = peak / rms if rms > 0 else 0.0
            out[5 + 3 * axis] = crest
            self.crests[axis] = crest
            total += rms * rms
        out[2] = total ** 0.5


def axis_features(a, n):
    # (RMS, peak) of a[:n] about its mean, in g: integer sums (partial sums
    # of 8 squares stay small ints on a 32-bit port; only the total may not),
    # exact correction for the fractional part of the mean.
    s = 0
    for i in range(n):
        s += a[i]
    mean = s // n
    acc = 0
    part = 0
    peak_n = 0
    for i in range(n):
        d = a[i] - mean
        part += d * d
        if i & 7 == 7:
            acc += part
            part = 0
        e = a[i] * n - s
        if e < 0:
            e = -e
        if e > peak_n:
            peak_n = e
    acc += part
    r = s - mean * n
    var = (acc - r * r / n) / n
    return (var ** 0.5 if var > 0 else 0.0) * adxl345.SCALE_G, peak_n / n * adxl345.SCALE_G


Sensors = VibrationSensors  # the name startup builds a model's sensor set by
