# Sensirion SHT3x (SHT30/31/35) temperature and humidity on I2C. Split in
# start() and read() so the 15 ms conversion overlaps the vibration burst
# instead of blocking. Each 16-bit word carries a CRC-8 (poly 0x31, init 0xFF)
# that is checked; a bad CRC raises ValueError, a NACK (conversion not done,
# no sensor) OSError.
from micropython import const

ADDRESS = const(0x44)  # ADDR pin low; 0x45 when high
_MEASURE_HIGH = b"\x24\x00"  # single shot, high repeatability, no clock stretching
_SOFT_RESET = b"\x30\xa2"


def crc8(buf, off, n):
    crc = 0xFF
    for i in range(off, off + n):
        crc ^= buf[i]
        for _ in range(8):
            crc = ((crc << 1) ^ 0x31) & 0xFF if crc & 0x80 else (crc << 1) & 0xFF
    return crc


class SHT3x:
    def __init__(self, i2c, address=ADDRESS):
        self._i2c = i2c
        self._addr = address
        self._buf = bytearray(6)
        i2c.writeto(address, _SOFT_RESET)

    def start(self):
        self._i2c.writeto(self._addr, _MEASURE_HIGH)

    def read(self):
        # (temperature in centi-degC, relative humidity in centi-%) as ints,
        # from the conversion start() began at least 15 ms ago.
        b = self._buf
        self._i2c.readfrom_into(self._addr, b)
        if crc8(b, 0, 2) != b[2] or crc8(b, 3, 2) != b[5]:
            raise ValueError("crc")
        t = (b[0] << 8) | b[1]
        rh = (b[3] << 8) | b[4]
        # T = -45 + 175 * t / 65535, RH = 100 * rh / 65535 (datasheet 4.13)
        return (17500 * t) // 65535 - 4500, (10000 * rh) // 65535
