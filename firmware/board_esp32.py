# ESP32 board (ESP32-DevKitC class). Pins, buses and sensor addresses come
# from board.json, written by `tandem build` from hw/boards/<board>.toml:
#   {"pins": {"i2c_sda": 21, "i2c_scl": 22, "uart_tx": 17, "uart_rx": 16,
#             "rs485_de": 4, "adc_vib": 34, "led": 2, "relay": 26, "buzzer": 25},
#    "i2c": {"id": 0, "freq": 400000, "adxl345": 83, "sht3x": 68},
#    "uart": {"id": 2, "baud": 19200}, "wdt_ms": 30000, "ntp": "pool.ntp.org"}
# Wi-Fi credentials stay in node.json "board_options": {"wifi": {...}}.
import os
import struct
import time
from array import array

import esp32
import machine
import network
from micropython import const

_VIB_SAMPLES = const(64)
_CLOCK_SET_AFTER_S = const(1704067200)  # 2024-01-01 (Unix): earlier means unset
_UNIX_MINUS_2000 = const(946684800)
_WIFI_RETRY_MIN_MS = const(1000)
_WIFI_RETRY_MAX_MS = const(60000)

ticks_ms = time.ticks_ms
ticks_add = time.ticks_add
ticks_diff = time.ticks_diff


def _out(pin):
    if pin is None:
        return None
    p = machine.Pin(pin, machine.Pin.OUT)
    p.value(0)
    return p


class Board:
    channels = ("temp", "vib")  # the "basic" sensor model

    def __init__(self, cfg):
        d = cfg.board_def
        self._def = d
        self._pins = d.get("pins", {})
        self._led = _out(self._pins.get("led"))
        self._relay = _out(self._pins.get("relay"))
        self._buzzer = _out(self._pins.get("buzzer"))
        self.buzz_until = None
        self._i2c = None
        self._adc = None
        self._raw = None
        self._mv_per_g = cfg.board_options.get("vib_mv_per_g", 300)
        wdt_ms = d.get("wdt_ms", 0)
        self._wdt = machine.WDT(timeout=wdt_ms) if wdt_ms else None
        # time.time() counts from 1970 or, on older ports, from 2000.
        self._epoch = 0 if time.gmtime(0)[0] == 1970 else _UNIX_MINUS_2000
        self._clock_set = self._unix_s() >= _CLOCK_SET_AFTER_S
        self._wifi = cfg.board_options.get("wifi")
        self._wlan = network.WLAN(network.STA_IF)
        self._wlan.active(True)
        self._retry_at = ticks_ms()
        self._retry_ms = _WIFI_RETRY_MIN_MS
        self.network_ready()

    # -- buses ---------------------------------------------------------------
    def i2c(self):
        if self._i2c is None:
            bus = self._def.get("i2c", {})
            self._i2c = machine.I2C(bus.get("id", 0), scl=machine.Pin(self._pins["i2c_scl"]),
                                    sda=machine.Pin(self._pins["i2c_sda"]),
                                    freq=bus.get("freq", 400000))
        return self._i2c

    def address(self, part, default):
        return self._def.get("i2c", {}).get(part, default)

    def rs485(self):
        # (UART, driver-enable pin) for the RS-485 transceiver (MAX3485: DE
        # and /RE tied together; high = transmit). DE starts low (receive).
        u = self._def.get("uart", {})
        uart = machine.UART(u.get("id", 2), baudrate=u.get("baud", 19200),
                            tx=self._pins["uart_tx"], rx=self._pins["uart_rx"])
        return uart, _out(self._pins["rs485_de"])

    def set_window(self, n):
        pass  # real sensors need no telling

    # -- the "basic" model: on-chip temperature, analog vibration RMS ----------
    def sample(self, n, out):
        adc = self._adc
        raw = self._raw
        if adc is None or raw is None:
            self._adc = adc = machine.ADC(machine.Pin(self._pins.get("adc_vib", 34)))
            adc.atten(machine.ADC.ATTN_11DB)
            self._raw = raw = array("H", bytes(2 * _VIB_SAMPLES))
        out[0] = (esp32.raw_temperature() - 32) / 1.8  # classic ESP32: die temperature in degF
        total = 0
        for i in range(_VIB_SAMPLES):
            raw[i] = adc.read_uv() // 1000
            total += raw[i]
        mean = total // _VIB_SAMPLES
        acc = 0
        for i in range(_VIB_SAMPLES):
            d = raw[i] - mean
            acc += d * d
        out[1] = (acc / _VIB_SAMPLES) ** 0.5 / self._mv_per_g

    # -- time, identity, network -----------------------------------------------
    def _unix_s(self):
        return time.time() + self._epoch

    def now_ms(self):
        # 0 until NTP has set the RTC; the gateway then stamps arrival time.
        if not self._clock_set:
            return 0
        # time_ns: the RTC's own sub-second part (ticks_ms() % 1000 has an
        # unrelated phase, so stamps could step back by up to 999 ms).
        return time.time_ns() // 1000000 + self._epoch * 1000

    def boot_id(self):
        return struct.unpack("<I", os.urandom(4))[0]

    def network_ready(self):
        # Station mode with reconnect: a lost access point is retried with
        # capped exponential backoff; the first connection sets the clock.
        if self._wlan.isconnected():
            self._retry_ms = _WIFI_RETRY_MIN_MS
            if not self._clock_set:
                self._sync_time()
            return True
        now = ticks_ms()
        if self._wifi and ticks_diff(now, self._retry_at) >= 0:
            try:
                self._wlan.disconnect()
                self._wlan.connect(self._wifi["ssid"], self._wifi.get("password", ""))
            except OSError:
                pass  # the driver is busy connecting; try again later
            self._retry_at = ticks_add(now, self._retry_ms)
            self._retry_ms = min(self._retry_ms * 2, _WIFI_RETRY_MAX_MS)
        return False

    def _sync_time(self):
        # SNTP once (blocks at most ntptime.timeout = 1 s); sets the RTC.
        import ntptime

        ntptime.host = self._def.get("ntp", "pool.ntp.org")
        ntptime.timeout = 1
        try:
            ntptime.settime()
            self._clock_set = True
        except (OSError, OverflowError):
            pass  # retried at the next network check

    # -- actuators, watchdog, power ------------------------------------------------
    def relay(self, on):
        if self._relay is not None:
            self._relay.value(1 if on else 0)

    def led(self, on):
        if self._led is not None:
            self._led.value(1 if on else 0)

    def buzz(self, ms):
        if self._buzzer is None:
            return
        self._buzzer.value(1 if ms > 0 else 0)
        self.buzz_until = ticks_add(ticks_ms(), ms) if ms > 0 else None

    def feed(self, now):
        if self._wdt is not None:
            self._wdt.feed()
        if self.buzz_until is not None and ticks_diff(now, self.buzz_until) >= 0:
            self.buzz(0)

    def deep_sleep(self, ms):
        # For battery nodes between reports: RAM is lost, the node boots anew.
        machine.deepsleep(ms)


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
