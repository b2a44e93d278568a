# ESP32 board skeleton: Wi-Fi station, on-chip temperature, vibration RMS from
# an analog accelerometer on an ADC pin. Pins and Wi-Fi come from the config's
# "board_options": {"wifi": {"ssid": .., "password": ..}, "vib_adc_pin": 34,
# "vib_mv_per_g": 300, "led_pin": 2}. To be completed against real hardware.
import os
import struct
import time
from array import array

import esp32
import machine
import network
from micropython import const

_VIB_SAMPLES = const(64)
_CLOCK_SET_AFTER_S = const(1704067200)  # 2024-01-01: earlier means unset


class Board:
    channels = ("temp", "vib")

    def __init__(self, cfg):
        opts = cfg.board_options
        self._adc = machine.ADC(machine.Pin(opts.get("vib_adc_pin", 34)))
        self._adc.atten(machine.ADC.ATTN_11DB)
        self._mv_per_g = opts.get("vib_mv_per_g", 300)
        self._raw = array("H", [0] * _VIB_SAMPLES)  # reused every sample
        self._wlan = network.WLAN(network.STA_IF)
        self._wlan.active(True)
        wifi = opts.get("wifi")
        if wifi and not self._wlan.isconnected():
            self._wlan.connect(wifi["ssid"], wifi.get("password", ""))

    def sample(self, n, out):
        out[0] = float(esp32.mcu_temperature())
        raw = self._raw
        total = 0
        for i in range(_VIB_SAMPLES):
            raw[i] = self._adc.read_uv() // 1000
            total += raw[i]
        mean = total // _VIB_SAMPLES
        acc = 0
        for i in range(_VIB_SAMPLES):
            d = raw[i] - mean
            acc += d * d
        out[1] = (acc / _VIB_SAMPLES) ** 0.5 / self._mv_per_g

    def now_ms(self):
        # 0 until NTP (or the gateway) has set the RTC; the gateway then
        # stamps arrival time.
        s = time.time()
        if s < _CLOCK_SET_AFTER_S:
            return 0
        return s * 1000

    def boot_id(self):
        return struct.unpack("<I", os.urandom(4))[0]

    def network_ready(self):
        return self._wlan.isconnected()


def halt(code):
    # A safe idle state: no crash-and-reboot loop draining the battery; blink
    # the code on the LED and wait for someone to fix the config.
    led = machine.Pin(2, machine.Pin.OUT)
    while True:
        for _ in range(code):
            led.on()
            time.sleep_ms(150)
            led.off()
            time.sleep_ms(250)
        machine.lightsleep(3000)
