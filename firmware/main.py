# Sensor node entry point, the same on the ESP32 and the unix port:
#   micropython -X heapsize=64K <bundle or firmware/>/main.py path/to/node.json
# On the board it runs at boot with /node.json. Kept tiny: MicroPython boots
# main.py from source, so everything else is in compiled modules.
import sys

import startup

if __name__ == "__main__":
    sys.exit(startup.main(sys.argv))
