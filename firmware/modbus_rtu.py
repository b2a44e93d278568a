# Modbus RTU slave: frames from a serial port, answered from four tables.
#   FC 01/02 read coils/discrete inputs, 03/04 read holding/input registers,
#   05/06 write one coil/register, 0F/10 write many; exceptions 01..04.
# A frame ends when its length (known from the function code) is reached
# with a good CRC, or after 3.5 characters of silence (spec timing: 11 bits
# per character, fixed 1750 us above 19200 baud). Unit 0 is a broadcast:
# writes are executed, nothing is sent back. Buffers are allocated once.
#
# The tables live in `regs` (see modbus_map): coils and discrete inputs as
# one byte per bit, holding and input registers as array("H"). regs.prepare
# (table) runs before a read, regs.commit(table, start, n) after a write and
# returns an exception code (0: accepted); a refused write is rolled back.
from array import array

from micropython import const
from time import ticks_diff, ticks_us

_MAX_ADU = const(256)
_POLY = const(0xA001)
_READ_BITS_MAX = const(2000)
_READ_REGS_MAX = const(125)
_WRITE_BITS_MAX = const(1968)
_WRITE_REGS_MAX = const(123)
_COIL = const(0)
_DISCRETE = const(1)
_HOLDING = const(2)
_INPUT = const(3)

ILLEGAL_FUNCTION = const(1)
ILLEGAL_ADDRESS = const(2)
ILLEGAL_VALUE = const(3)
DEVICE_FAILURE = const(4)

# counters (exposed as input registers by modbus_map)
BUS_MSGS = const(0)  # frames with a good CRC, any unit
CRC_ERRORS = const(1)
EXCEPTIONS = const(2)  # exception responses sent
UNIT_MSGS = const(3)  # frames for this unit or broadcast
BROADCASTS = const(4)
OVERRUNS = const(5)  # longer than an ADU or shorter than 4 bytes
COUNTERS = ("bus_msgs", "crc_errors", "exceptions", "unit_msgs", "broadcasts", "overruns")


def _table():
    t = array("H", bytes(512))
    for i in range(256):
        c = i
        for _ in range(8):
            c = (c >> 1) ^ _POLY if c & 1 else c >> 1
        t[i] = c
    return t


_CRC = _table()


def crc16(buf, n):
    # CRC-16/MODBUS of buf[:n]; appended low byte first, so 0 over a whole frame.
    t = _CRC
    c = 0xFFFF
    for i in range(n):
        c = (c >> 8) ^ t[(c ^ buf[i]) & 0xFF]
    return c


def silence_us(baud):
    # t3.5: 3.5 characters of 11 bits; fixed 1750 us above 19200 baud.
    return 1750 if baud > 19200 else 38500000 // baud


class Slave:
    def __init__(self, port, unit, regs, baud):
        self.port = port
        self.unit = unit
        self.regs = regs
        self.t35 = silence_us(baud)
        self.rx = bytearray(_MAX_ADU)
        self.tx = bytearray(_MAX_ADU)
        self._rxv = memoryview(self.rx)
        self._txv = memoryview(self.tx)
        # rollback copies of the writable tables, for a refused write
        self._undo_bits = bytearray(regs.size(_COIL))
        self._undo_regs = array("H", bytes(2 * regs.size(_HOLDING)))
        self.n = 0
        self.last = ticks_us()  # when the last byte arrived (unused while n == 0)
        self.counts = [0] * len(COUNTERS)

    def wait_ms(self, limit):
        # How long the caller may sleep: until this partial frame's silence.
        if not self.n:
            return limit
        left = self.t35 - ticks_diff(ticks_us(), self.last)
        return min(limit, max(0, left + 999) // 1000)

    def poll(self):
        # Non-blocking: read what arrived, answer a complete frame.
        n = self.n
        got = self.port.readinto(self._rxv[n:])
        if got:
            self.n = n = n + got
            self.last = ticks_us()
            need = self._expected(n)
            if need and n >= need and crc16(self.rx, need) == 0:
                self._frame(need)
                self._shift(need)
            elif n >= _MAX_ADU:
                self.counts[OVERRUNS] += 1
                self.n = 0
        elif n and ticks_diff(ticks_us(), self.last) >= self.t35:
            self.end_of_frame()

    def end_of_frame(self):
        # Silence: the bytes so far are one frame (of a function unknown to
        # the length rule, or broken).
        n = self.n
        self.n = 0
        if n < 4:
            self.counts[OVERRUNS] += 1
        elif crc16(self.rx, n):
            self.counts[CRC_ERRORS] += 1
        else:
            self._frame(n)

    def _shift(self, used):
        # Bytes after a complete frame start the next one (rare: glued frames).
        rest = self.n - used
        if rest > 0:
            self.rx[:rest] = self.rx[used:self.n]
        self.n = max(rest, 0)

    def _expected(self, n):
        # Request length from its header; 0 when unknown (wait for silence).
        if n < 2:
            return 0
        fc = self.rx[1]
        if 1 <= fc <= 6:
            return 8
        if fc == 15 or fc == 16:
            return 9 + self.rx[6] if n >= 7 else 0
        return 0

    def _frame(self, n):
        c = self.counts
        c[BUS_MSGS] += 1
        unit = self.rx[0]
        if unit != self.unit and unit != 0:
            return
        c[UNIT_MSGS] += 1
        end = self._execute(n)
        if unit == 0:
            c[BROADCASTS] += 1
            return
        tx = self.tx
        tx[0] = unit
        if end < 0:  # exception: function | 0x80, code
            tx[1] = self.rx[1] | 0x80
            tx[2] = -end
            end = 3
            c[EXCEPTIONS] += 1
        crc = crc16(tx, end)
        tx[end] = crc & 0xFF
        tx[end + 1] = crc >> 8
        self.port.write(self._txv[:end + 2])

    def _execute(self, n):
        # Fills tx[1:] with the response PDU; returns its end, or -code.
        rx = self.rx
        fc = rx[1]
        self.tx[1] = fc
        if not 1 <= fc <= 6 and fc != 15 and fc != 16:
            return -ILLEGAL_FUNCTION
        if n != (self._expected(n) or -1):
            return -ILLEGAL_VALUE  # a PDU of the wrong length
        start = rx[2] << 8 | rx[3]
        qty = rx[4] << 8 | rx[5]
        if fc <= 2:
            return self._read_bits(fc - 1, start, qty, _READ_BITS_MAX)
        if fc <= 4:
            return self._read_regs(_HOLDING if fc == 3 else _INPUT, start, qty)
        if fc == 5:
            if qty != 0xFF00 and qty != 0:
                return -ILLEGAL_VALUE
            return self._write_bits(start, 1, 4, qty)
        if fc == 6:
            return self._write_regs(start, 1, 4)
        if rx[6] != (((qty + 7) >> 3) if fc == 15 else 2 * qty):
            return -ILLEGAL_VALUE
        if fc == 15:
            return self._write_bits(start, qty, 7, -1)
        return self._write_regs(start, qty, 7)

    def _check(self, table, start, qty, most):
        if not 1 <= qty <= most:
            return -ILLEGAL_VALUE
        if start + qty > self.regs.size(table):
            return -ILLEGAL_ADDRESS
        return 0

    def _read_bits(self, table, start, qty, most):
        err = self._check(table, start, qty, most)
        if err:
            return err
        self.regs.prepare(table)
        bits = self.regs.tables[table]
        tx = self.tx
        nbytes = (qty + 7) >> 3
        tx[2] = nbytes
        for i in range(nbytes):
            tx[3 + i] = 0
        for i in range(qty):
            if bits[start + i]:
                tx[3 + (i >> 3)] |= 1 << (i & 7)
        return 3 + nbytes

    def _read_regs(self, table, start, qty):
        err = self._check(table, start, qty, _READ_REGS_MAX)
        if err:
            return err
        self.regs.prepare(table)
        regs = self.regs.tables[table]
        tx = self.tx
        tx[2] = 2 * qty
        j = 3
        for i in range(start, start + qty):
            v = regs[i]
            tx[j] = v >> 8
            tx[j + 1] = v & 0xFF
            j += 2
        return j

    def _write_bits(self, start, qty, at, single):
        # single >= 0: FC05 (value 0xFF00/0), else FC0F with packed bits at rx[at:].
        err = self._check(_COIL, start, qty, _WRITE_BITS_MAX)
        if err:
            return err
        bits = self.regs.tables[_COIL]
        undo = self._undo_bits
        rx = self.rx
        for i in range(start, start + qty):
            undo[i] = bits[i]
            if single >= 0:
                bits[i] = 1 if single == 0xFF00 else 0
            else:
                bits[i] = (rx[at + ((i - start) >> 3)] >> ((i - start) & 7)) & 1
        err = self.regs.commit(_COIL, start, qty)
        if err:
            for i in range(start, start + qty):
                bits[i] = undo[i]
            return -err
        return self._echo()

    def _write_regs(self, start, qty, at):
        err = self._check(_HOLDING, start, qty, _WRITE_REGS_MAX)
        if err:
            return err
        regs = self.regs.tables[_HOLDING]
        undo = self._undo_regs
        rx = self.rx
        j = at
        for i in range(start, start + qty):
            undo[i] = regs[i]
            regs[i] = rx[j] << 8 | rx[j + 1]
            j += 2
        err = self.regs.commit(_HOLDING, start, qty)
        if err:
            for i in range(start, start + qty):
                regs[i] = undo[i]
            return -err
        return self._echo()

    def _echo(self):
        # FC05/06 echo the request; FC0F/10 answer start and quantity.
        tx = self.tx
        rx = self.rx
        for i in range(2, 6):
            tx[i] = rx[i]
        return 6
