# Serial port of the Modbus slave on the unix port: a tty or pty path.
# Traps (FIELD-NOTES): termios here has no VMIN/VTIME names, so cc[6]/cc[5]
# are set to 0 by index (else read blocks for n bytes); readiness comes from
# select.poll on the file object. Parity and stop bits are Linux cflag
# values (no names here either); a pty ignores them and the baud rate.
import termios

_VMIN = 6
_VTIME = 5
_CSTOPB = 0o100
_PARENB = 0o400
_PARODD = 0o1000


class Port:
    def __init__(self, m):
        self.f = open(m.port, "r+b")
        fd = self.f.fileno()
        termios.setraw(fd)
        attrs = termios.tcgetattr(fd)
        attrs[6][_VMIN] = 0
        attrs[6][_VTIME] = 0
        if m.parity == "N":
            attrs[2] = (attrs[2] | _CSTOPB) & ~(_PARENB | _PARODD)
        else:
            attrs[2] = (attrs[2] | _PARENB | (_PARODD if m.parity == "O" else 0)) & ~_CSTOPB
        speed = getattr(termios, "B%d" % m.baudrate, None)
        if speed is not None:
            attrs[4] = attrs[5] = speed
        termios.tcsetattr(fd, termios.TCSANOW, attrs)
        self.stream = self.f  # what select.poll waits on
        self.readinto = self.f.readinto  # returns 0 when nothing is waiting
        self.write = self.f.write

    def close(self):
        self.f.close()
