# The "modbus" section of node.json (absent: no slave), checked with config's
# field helpers; a module of its own so nodes without a bus never compile it.
#   {"unit": 1, "baudrate": 19200, "parity": "E", "map": "registers.json",
#    "port": "/dev/ttyUSB0",                                  (unix port)
#    "uart": 2, "tx_pin": 17, "rx_pin": 16, "de_pin": 4}      (ESP32; de_pin -1: none)


class Modbus:
    # Bare annotations: for mypy only, MicroPython compiles them to nothing.
    unit: int
    baudrate: int
    parity: str
    map: str
    port: str
    uart: int
    tx_pin: int
    rx_pin: int
    de_pin: int


def load(s, base, resolve):
    m = Modbus()
    m.unit = s.number("unit", 1, 247, 1)
    m.baudrate = s.number("baudrate", 1200, 1000000, 19200)
    m.parity = s.choice("parity", ("N", "E", "O"), "E")
    m.map = resolve(base, s.get("map", str, "registers.json"))
    m.port = s.get("port", str, "/dev/ttyUSB0")
    m.uart = s.number("uart", 0, 2, 2)
    m.tx_pin = s.number("tx_pin", 0, 48, 17)
    m.rx_pin = s.number("rx_pin", 0, 48, 16)
    m.de_pin = s.number("de_pin", -1, 48, -1)
    return m
