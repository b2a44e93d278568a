# Register-level signals for the simulated I2C sensors (simbus.py), driven
# by sim.py's scenarios: the accelerometer's samples and the SHT3x's raw
# words for each window. Integer arithmetic only and no MicroPython imports,
# so tests import this module in CPython and predict what the drivers read.
from sim import _drift, temp_centi, vib_milli_g

# One sine period in 64 steps, scaled by 1024 (a literal: no float rounding
# differences between ports).
_SIN = (0, 100, 200, 297, 392, 483, 569, 650, 724, 792, 851, 903, 946, 980, 1004, 1019,
        1024, 1019, 1004, 980, 946, 903, 851, 792, 724, 650, 569, 483, 392, 297, 200, 100)
LSB_PER_G = 256  # ADXL345 full resolution
IMPULSE_EVERY = 25  # samples between bearing-fault impacts
_IMPULSE = (1024, -768, 512, -256)  # decaying ring-down after each impact, /1024
_SINE_MG = 60  # shaft vibration; the rest of vib_milli_g is impacts


def _sin(i):
    i &= 63
    return _SIN[i] if i < 32 else -_SIN[i - 32]


def vib_shape(seed, scenario, n):
    # (shaft amplitude, impact amplitude) in LSB for window n, sized so the
    # vector RMS is about vib_milli_g: the sine orbit (x, y full, z half)
    # has RMS 1.06 A; the impact train on all three axes 0.474 I.
    m = vib_milli_g(seed, scenario, n)
    sine = min(m, _SINE_MG)
    amp = sine * LSB_PER_G * 1000 // 1060000
    imp = (m - sine) * LSB_PER_G * 1000 // 474000
    return amp, imp


def vib_lsb(amp, imp, k):
    # Sample k of a window: (x, y, z) in LSB before sensor noise; gravity on z.
    x = amp * _sin(4 * k) >> 10
    y = amp * _sin(4 * k + 16) >> 10
    z = LSB_PER_G + (amp * _sin(8 * k) >> 11)
    j = k % IMPULSE_EVERY
    if imp and j < 4:
        d = imp * _IMPULSE[j] >> 10
        x += d
        y += d
        z += d
    return x, y, z


def sht_raw(seed, scenario, n):
    # SHT3x raw words (temperature, humidity) for window n's temperature.
    c = temp_centi(seed, scenario, n)
    t = ((c + 4500) * 65535 + 8750) // 17500
    rh = 4500 - _drift(n) * 4
    return max(0, min(t, 65535)), rh * 65535 // 10000
