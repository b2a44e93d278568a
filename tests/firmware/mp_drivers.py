# mypy: ignore-errors
# MicroPython side of the driver tests: the real drivers (adxl345, sht3x,
# vibration features) against the simulated I2C devices (simbus). One
# command per stdin line, one JSON result line per command:
#   A seed scenario window n  -> {"x": [...], "y": [...], "z": [...], "f": [[rms, peak], x3]}
#   T seed scenario window crc_every reads -> [[t_centi, rh_centi] | "crc" | "nack", ...]
#   E                         -> errno of an ADXL345 on a bus without one
#   R hz                      -> BW_RATE register after rate(hz), or "ValueError"
import json
import sys
import time
from array import array

import simbus
from adxl345 import ADXL345
from sht3x import SHT3x
from vibration import axis_features


def accel(seed, scenario, window, n):
    bus = simbus.bus(seed, scenario)
    acc = ADXL345(bus)
    bus.set_window(window)
    xs, ys, zs = array("h", bytes(2 * n)), array("h", bytes(2 * n)), array("h", bytes(2 * n))
    for i in range(n):
        acc.read(xs, ys, zs, i)
    return {"x": list(xs), "y": list(ys), "z": list(zs),
            "f": [list(axis_features(a, n)) for a in (xs, ys, zs)]}


def thermo(seed, scenario, window, crc_every, reads):
    bus = simbus.bus(seed, scenario, crc_every)
    sht = SHT3x(bus)
    bus.set_window(window)
    out = []
    for _ in range(reads):
        sht.start()
        try:
            sht.read()  # too early: the conversion takes 15 ms
            out.append("early")
            continue
        except OSError:
            pass
        time.sleep_ms(16)
        try:
            out.append(list(sht.read()))
        except ValueError:
            out.append("crc")
    return out


def main():
    for line in sys.stdin:
        f = line.split()
        if not f:
            continue
        if f[0] == "A":
            print(json.dumps(accel(int(f[1]), f[2], int(f[3]), int(f[4]))))
        elif f[0] == "T":
            print(json.dumps(thermo(int(f[1]), f[2], int(f[3]), int(f[4]), int(f[5]))))
        elif f[0] == "E":
            try:
                ADXL345(simbus.SimI2C({}))
                print("null")
            except OSError as e:
                print(json.dumps(e.args[0]))
        elif f[0] == "R":
            bus = simbus.bus(1, "normal")
            acc = ADXL345(bus)
            try:
                acc.rate(int(f[1]))
                reg = bytearray(1)
                bus.readfrom_mem_into(0x53, 0x2C, reg)
                print(json.dumps(reg[0]))
            except ValueError:
                print('"ValueError"')


main()
