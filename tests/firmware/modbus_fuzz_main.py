# MicroPython entry for the fuzz test: the slave's frame parser fed from stdin.
# One hex line per burst; after each burst the line goes quiet (end_of_frame).
# Every reply must carry a good CRC. Prints {"ev": "done", ...} at the end;
# any exception escapes as a traceback (the test fails on it).
import sys

sys.path.insert(0, "firmware")

import modbus_map  # noqa: E402
import modbus_rtu  # noqa: E402
from binascii import unhexlify  # noqa: E402


class FakePort:
    def __init__(self):
        self.pending = b""
        self.replies = 0
        self.bad = 0

    def readinto(self, buf):
        n = min(len(buf), len(self.pending))
        buf[:n] = self.pending[:n]
        self.pending = self.pending[n:]
        return n

    def write(self, data):
        self.replies += 1
        if modbus_rtu.crc16(data, len(data)) != 0 or len(data) < 5:
            self.bad += 1


port = FakePort()
regs = modbus_map.Regs("firmware/registers.json")
slave = modbus_rtu.Slave(port, 1, regs, 19200)
bursts = 0
for line in sys.stdin:
    line = line.strip()
    if not line:
        continue
    port.pending = unhexlify(line)
    while port.pending:
        slave.poll()
    if slave.n:
        slave.end_of_frame()
    bursts += 1
print('{"ev": "done", "bursts": %d, "replies": %d, "bad": %d, "counts": %s}'
      % (bursts, port.replies, port.bad, slave.counts))
