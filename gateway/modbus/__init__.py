"""Modbus access: register maps (hw/registers), pure codecs, one coordinator per bus."""
