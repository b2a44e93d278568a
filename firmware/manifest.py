# Freezes the node into an ESP32 firmware image (modules then cost no heap):
#   make -C ports/esp32 BOARD=ESP32_GENERIC FROZEN_MANIFEST=/path/to/firmware/manifest.py
# main.py stays a file on the board's filesystem next to /node.json and the DER files
# (and /registers.json when node.json has a "modbus" section).
include("$(PORT_DIR)/boards/manifest.py")
metadata(description="Tandem sensor node", version="0.1.0")
for name in ("adxl345", "backoff", "board_esp32", "cbor", "cbor_decode", "coap", "coap_blocks",
             "commands", "config", "config_sensing", "eventlog", "exchange", "fieldnode", "link",
             "node", "nodestats", "outbox", "rawsend", "report", "sht3x", "sidejobs", "spill",
             "startup", "vibration", "windowtime"):
    module(name + ".py")
for name in ("modbus_config", "modbus_map", "modbus_node", "modbus_rtu", "uart_esp32"):
    module(name + ".py")
