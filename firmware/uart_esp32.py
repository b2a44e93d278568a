# Serial port of the Modbus slave on the ESP32: machine.UART to an RS-485
# transceiver whose driver-enable (DE, tied to /RE) is a GPIO: raised for a
# reply, dropped once the last stop bit has left (UART.flush waits for it),
# so the bus is free for the master's next frame.
from machine import UART, Pin

_PARITY = {"N": None, "E": 0, "O": 1}


class Port:
    def __init__(self, m):
        parity = _PARITY[m.parity]
        self.uart = UART(m.uart, baudrate=m.baudrate, bits=8, parity=parity,
                         stop=2 if parity is None else 1, tx=m.tx_pin, rx=m.rx_pin,
                         timeout=0, rxbuf=512)
        self.stream = self.uart
        self.readinto = self.uart.readinto  # None when nothing is waiting
        self.de = Pin(m.de_pin, Pin.OUT, value=0) if m.de_pin >= 0 else None

    def write(self, buf):
        de = self.de
        if de is None:
            return self.uart.write(buf)
        de.on()
        try:
            n = self.uart.write(buf)
            self.uart.flush()
        finally:
            de.off()
        return n

    def close(self):
        self.uart.deinit()
