# MicroPython entry for tests and the bench: the node's Modbus RTU slave
# (modbus_node.NodeBus, the code the node runs) alone on a serial port, with
# fixed readings instead of sensors and no DTLS link:
#   micropython -X heapsize=64K tests/firmware/modbus_slave_main.py PORT [UNIT [BAUD [MAP]]]
# Prints {"ev": "ready"} once serving, {"ev": "modbus_write", ...} per write,
# and {"ev": "exit", counters...} on SIGINT. Run with the repository as cwd.
import gc
import select
import sys

sys.path.insert(0, "firmware")

import modbus_node  # noqa: E402
from eventlog import EventLog  # noqa: E402

CHANNELS = ("temp", "vib")
VALUES = [21.5, 0.75]


class _Obj:
    pass


class _Link:
    up = True


def main(argv):
    cfg = _Obj()
    cfg.board = "host"
    cfg.period_ms = 1000
    m = cfg.modbus = _Obj()
    m.port = argv[1]
    m.unit = int(argv[2]) if len(argv) > 2 else 1
    m.baudrate = int(argv[3]) if len(argv) > 3 else 19200
    m.parity = "N"  # a pty refuses a second PARENB open (EINVAL); parity means nothing on it
    m.map = argv[4] if len(argv) > 4 else "firmware/registers.json"
    log = EventLog("info")
    node = _Obj()
    node.poller = select.poll()
    node.link = _Link()
    bus = modbus_node.NodeBus(cfg, log)
    bus.attach(node)
    bus.sampled(7, CHANNELS, VALUES)
    gc.collect()
    log.always("ready", heap=gc.mem_alloc())
    poller = node.poller
    try:
        while True:
            poller.poll(bus.wait_ms(1000))
            bus.poll()
    except KeyboardInterrupt:
        pass
    c = bus.slave.counts
    log.always("exit", counts=c, period_ms=cfg.period_ms, peak=gc.mem_alloc())


main(sys.argv)
