# ADXL345 3-axis accelerometer on I2C (Analog Devices datasheet rev. G).
# Full-resolution mode, +-16 g: 13-bit two's complement at 1/256 g per LSB on
# every range. One sample is one 6-byte burst read of DATAX0..DATAZ1 into a
# buffer allocated once; read() allocates nothing.
from micropython import const

ADDRESS = const(0x53)  # ALT ADDRESS pin low; 0x1D when high
_DEVID = const(0x00)
_DEVID_VALUE = const(0xE5)
_BW_RATE = const(0x2C)
_POWER_CTL = const(0x2D)
_MEASURE = const(0x08)
_DATA_FORMAT = const(0x31)
_FULL_RES_16G = const(0x0B)  # FULL_RES | range +-16 g
_DATAX0 = const(0x32)
_FIFO_CTL = const(0x38)
_BYPASS = const(0x00)

SCALE_G = 1 / 256  # g per LSB in full-resolution mode
# Output data rate (Hz) -> BW_RATE rate code (datasheet table 7).
RATES = {100: 0x0A, 200: 0x0B, 400: 0x0C, 800: 0x0D, 1600: 0x0E, 3200: 0x0F}


class ADXL345:
    def __init__(self, i2c, address=ADDRESS):
        self._i2c = i2c
        self._addr = address
        self._buf = bytearray(6)
        self._reg = bytearray(1)
        self._i2c.readfrom_mem_into(address, _DEVID, self._reg)
        if self._reg[0] != _DEVID_VALUE:
            raise OSError(19)  # ENODEV: something else answers at this address
        self._write(_POWER_CTL, 0)  # standby while configuring
        self._write(_DATA_FORMAT, _FULL_RES_16G)
        self._write(_FIFO_CTL, _BYPASS)
        self.rate(400)
        self._write(_POWER_CTL, _MEASURE)

    def _write(self, reg, value):
        self._reg[0] = value
        self._i2c.writeto_mem(self._addr, reg, self._reg)

    def rate(self, hz):
        # Output data rate; ValueError for a rate the chip does not have.
        code = RATES.get(hz)
        if code is None:
            raise ValueError("rate_hz")
        self._write(_BW_RATE, code)

    def read(self, xs, ys, zs, i):
        # One sample into xs[i], ys[i], zs[i] (array('h')), raw LSB.
        b = self._buf
        self._i2c.readfrom_mem_into(self._addr, _DATAX0, b)
        xs[i] = _s16(b[0] | (b[1] << 8))
        ys[i] = _s16(b[2] | (b[3] << 8))
        zs[i] = _s16(b[4] | (b[5] << 8))


def _s16(v):
    return v - 0x10000 if v & 0x8000 else v
