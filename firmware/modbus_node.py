# The node's Modbus RTU slave, one more step of the node's poll loop: startup.py
# builds it when node.json has a "modbus" section; Node calls attach() once,
# sampled() after each sample, wait_ms()/poll() every loop. Live values,
# status and counters are input registers; the sample period and alarm
# thresholds holding registers (a write takes effect at the next sample);
# stop/relay/buzzer coils; alarm and link bits discrete inputs.
import select

import modbus_map
import modbus_rtu
from micropython import const

MapError = modbus_map.MapError
_PORTS = {"host": "uart_host", "esp32": "uart_esp32"}
_DISCRETE = const(1)
_INPUT = const(3)
_LINK_UP = const(1)
_STOPPED = const(2)
_ALARM_BIT = const(4)  # then one bit per channel alarm, in channel order


class NodeBus:
    def __init__(self, cfg, log, port=None):
        m = cfg.modbus
        self.cfg = cfg
        self.log = log
        self.regs = modbus_map.Regs(m.map)
        self.port = port or __import__(_PORTS[cfg.board]).Port(m)
        self.slave = modbus_rtu.Slave(self.port, m.unit, self.regs, m.baudrate)
        self.regs.on_prepare = self._prepare
        self.regs.on_write = self._written
        self.regs.set("period_ms", cfg.period_ms)
        self.node = None
        self.alarms = None  # (channel index, threshold source, alarm bit source)
        self.status = 0
        log.info("modbus", unit=m.unit, baud=m.baudrate, map=self.regs.name)

    def attach(self, node):
        self.node = node
        node.poller.register(self.port.stream, select.POLLIN)

    def wait_ms(self, limit):
        return self.slave.wait_ms(limit)

    def poll(self):
        self.slave.poll()

    def sampled(self, seq, channels, values):
        regs = self.regs
        if self.alarms is None:  # once: the channels whose threshold the map has
            self.alarms = tuple((i, ch + "_alarm", ch + "_alarm_on")
                                for i, ch in enumerate(channels) if regs.has(ch + "_alarm"))
        for i in range(len(channels)):
            regs.set(channels[i], values[i])
        regs.set("samples", seq)
        status = self.status & _STOPPED
        bit = _ALARM_BIT
        for i, limit, flag in self.alarms:
            on = values[i] > regs.value(limit)
            regs.set(flag, on)
            if on:
                status |= bit
            bit <<= 1
        self.status = status
        self._prepare(_INPUT)

    def _prepare(self, table):
        # Just before a master reads: link state and counters as of now.
        regs = self.regs
        up = self.node is not None and self.node.link.up
        self.status = (self.status & ~_LINK_UP) | (_LINK_UP if up else 0)
        if table == _DISCRETE:
            regs.set("link_up", up)
        elif table == _INPUT:
            regs.set("status", self.status)
            counts = self.slave.counts
            names = modbus_rtu.COUNTERS
            for i in range(len(names)):
                regs.set(names[i], counts[i] & 0xFFFF)

    def _written(self, source, value):
        # A master changed a coil or holding register (already range-checked).
        self.log.info("modbus_write", point=source, value=value)
        if source == "stop":
            regs = self.regs
            regs.set("stopped", value)
            self.status = (self.status & ~_STOPPED) | (_STOPPED if value else 0)
        elif hasattr(self.cfg, source):
            setattr(self.cfg, source, value)  # e.g. period_ms
