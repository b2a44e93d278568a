# Simulated machine sensors for the host board: a motor's housing temperature
# and vibration RMS, as pure functions of (seed, scenario, sample number).
# Integer arithmetic only, with one final division, so CPython computes the
# very same floats and tests can predict every reported value.
# No MicroPython imports here on purpose: tests import this module in CPython.

SCENARIOS = ("normal", "bearing_fault", "over_temp")
CHANNELS = ("temp", "vib")

_FAULT_START = 10  # sample after which a fault scenario starts to drift


def _noise(seed, n, k):
    # Centred pseudo-random integer in [-32768, 32768]; stays a small int on
    # 32-bit ports (no bignum allocation while sampling).
    x = ((seed % 65521) * 7919 + (n % 65521) * 4099 + k * 211) % 65521
    for _ in range(3):
        x = (x * 75 + 74) % 65537
    return x - 32768


def _drift(n):
    # Slow triangle wave, +-1.5 degC over 600 samples (a day in miniature).
    t = n % 600
    return (t if t < 300 else 600 - t) - 150


def temp_centi(seed, scenario, n):
    c = 2350 + _drift(n) + _noise(seed, n, 1) * 30 // 32768
    if scenario == "over_temp" and n > _FAULT_START:
        c += min((n - _FAULT_START) * 40, 7000)
    elif scenario == "bearing_fault":
        c += min(n, 200) * 2
    return c


def vib_milli_g(seed, scenario, n):
    m = 50 + _noise(seed, n, 2) * 10 // 32768
    if scenario == "bearing_fault" and n > _FAULT_START:
        grow = min((n - _FAULT_START) * 20, 2000)
        m += grow + _noise(seed, n, 3) * (grow // 10 + 1) // 32768
    return m


def sample(seed, scenario, n, out):
    # Fills out[0] (temp, degC) and out[1] (vib, g RMS) for sample n.
    out[0] = temp_centi(seed, scenario, n) / 100
    out[1] = vib_milli_g(seed, scenario, n) / 1000
