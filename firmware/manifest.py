# Freezes the node into an ESP32 firmware image (modules then cost no heap):
#   make -C ports/esp32 BOARD=ESP32_GENERIC FROZEN_MANIFEST=/path/to/firmware/manifest.py
# main.py stays a file on the board's filesystem next to /node.json and the DER files.
include("$(PORT_DIR)/boards/manifest.py")
metadata(description="Tandem sensor node", version="0.1.0")
for name in ("backoff", "board_esp32", "cbor", "cbor_decode", "coap", "config", "eventlog",
             "exchange", "link", "node", "outbox", "report"):
    module(name + ".py")
