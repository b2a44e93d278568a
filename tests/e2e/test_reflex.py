"""The local reflex end to end, with the cloud not running at all.

Every program is its own process: the gateway, a MicroPython sensor node in
the bearing-fault scenario, pymodbus's own Modbus TCP server (a "PLC", a
third-party device) and the firmware's Modbus RTU slave on a socat pty. The
gateway polls both Modbus devices and judges every report against a rules
file. A separate pymodbus client reads what the gateway wrote to the PLC,
and drives the PLC's `load` register to exercise debounce and hysteresis.
The gateway's uplink points at a port where nothing listens.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from pymodbus.client import ModbusTcpClient

from tandem.tools.site import REPO, NodeSpec, Site, SitePorts
from tests import waiting
from tests.modbus_rig import PlcProcess, PtyPair, SlaveProcess
from tests.ports import free_port, free_udp_port

pytestmark = pytest.mark.timeout(180)

SENSOR_MAP = REPO / "hw" / "registers" / "sensor-node.toml"
FOR_MS = 1500  # overload must hold this long before the stop
CLEAR_MS = 1000  # and be below clear_below this long before the all-clear
POLL_S = 0.05

PLC_MAP = """\
version = 1
name = "plc"
[[point]]
name = "load"
table = "holding"
address = 0
type = "uint16"
access = "rw"
[[point]]
name = "line_stop"
table = "coil"
address = 0
access = "rw"
"""

RULES = """\
version = 1

[action.stop_line]                 # the PLC, by address: goes through the plc bus's coordinator
kind = "emergency_stop"
host = "127.0.0.1"
port = {plc}
unit = 1
coil = 0
timeout_s = 1.0

[action.stop_press]                # the RTU slave, by bus name
kind = "emergency_stop"
bus = "line1"
unit = 1
coil = 0
timeout_s = 1.0

[action.overload_stop]
kind = "emergency_stop"
host = "127.0.0.1"
port = {plc}
coil = 1

[action.overload_clear]
kind = "emergency_stop"
host = "127.0.0.1"
port = {plc}
coil = 2

[[rule]]
name = "bearing"
device = "node-01"
severity = 3
for_ms = 1000
when = {{ input = "vib", above = 0.5, clear_below = 0.3 }}
actions = ["stop_line", "stop_press"]

[[rule]]
name = "overload"
device = "plc/press"
for_ms = {for_ms}
clear_ms = {clear_ms}
when = {{ input = "load", above = 80.0, clear_below = 50.0 }}
actions = ["overload_stop"]
clear_actions = ["overload_clear"]
"""

BUSES = """
[modbus]
actuator = "process"               # stops to the PLC: the actuator process; to line1: its bus

[[modbus.bus]]
name = "plc"
kind = "tcp"
host = "127.0.0.1"
tcp_port = {plc}
timeout_s = 0.5
backoff_max_s = 1.0
units = [{{ name = "press", unit_id = 1, map = "{plc_map}", poll_s = {poll_s} }}]

[[modbus.bus]]
name = "line1"
kind = "rtu"
port = "{pty}"
baudrate = 19200
parity = "N"
timeout_s = 0.5
backoff_max_s = 1.0
units = [{{ name = "press", unit_id = 1, map = "{sensor_map}", poll_s = 0.5 }}]
"""


@dataclass
class Rig:
    """The running site and handles on its devices."""

    site: Site
    plc: ModbusTcpClient
    slave: SlaveProcess

    def metric(self, name: str, **labels: str) -> float:
        """A sample from the gateway's /metrics (0 when absent)."""
        text = httpx.get(f"http://127.0.0.1:{self.site.ports.metrics}/metrics", timeout=5).text
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if sample.name == name and all(sample.labels.get(k) == v
                                               for k, v in labels.items()):
                    return float(sample.value)
        return 0.0

    def transitions(self, rule: str, transition: str) -> float:
        return self.metric("tandem_gw_rule_transitions_total", rule=rule, transition=transition)

    def polls(self) -> float:
        return self.metric("tandem_gw_modbus_polls_total", bus="plc", unit="press", result="ok")

    def coil(self, address: int) -> bool:
        """Read one PLC coil with the test's own client (not the gateway's)."""
        reply = self.plc.read_coils(address, count=1, device_id=1)
        assert not reply.isError(), reply
        return bool(reply.bits[0])

    def set_load(self, value: int) -> float:
        """Write the PLC's load register; the wall time (s) once the PLC has it."""
        assert not self.plc.write_register(0, value, device_id=1).isError()
        return time.time()

    def polled_after(self, moment: float, polls: int = 2, timeout: float = 20.0) -> None:
        """Wait until the gateway has polled the PLC `polls` times since wall time `moment`."""
        wait_until(lambda: time.time() >= moment, "the moment", timeout)
        start = self.polls()
        wait_until(lambda: self.polls() >= start + polls, f"{polls} more PLC polls", timeout)


def wait_until(check: Callable[[], bool], what: str, timeout: float = 30.0) -> float:
    """Poll until check() holds (tests.waiting); the wall time when it did."""
    waiting.wait_until(check, what, timeout)
    return time.time()


@pytest.fixture(scope="module")
def rig(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rig]:
    root = tmp_path_factory.mktemp("reflex")
    plc_map = root / "plc-map.toml"
    plc_map.write_text(PLC_MAP)
    plc = PlcProcess()
    pty = PtyPair(root)
    slave: SlaveProcess | None = None
    client = ModbusTcpClient("127.0.0.1", port=plc.port, timeout=2, retries=1)
    # The cloud port is only reserved: nothing ever listens there.
    site = Site(root / "site", SitePorts(free_port(), free_udp_port(), free_port()),
                window_s=1.0,
                rules=RULES.format(plc=plc.port, for_ms=FOR_MS, clear_ms=CLEAR_MS),
                gateway_extra=BUSES.format(plc=plc.port, plc_map=plc_map, poll_s=POLL_S,
                                           pty=pty.b, sensor_map=SENSOR_MAP))
    try:
        pty.start()
        slave = SlaveProcess(pty.a, unit=1).start()
        assert client.connect()
        site.prepare()
        site.start_gateway()
        yield Rig(site, client, slave)
    finally:
        site.stop_all()
        client.close()
        if slave is not None:
            slave.stop()
        pty.stop()
        plc.stop()


def test_a_spike_shorter_than_for_ms_does_not_fire(rig: Rig) -> None:
    rig.polled_after(time.time())  # the gateway polls the PLC
    high = rig.set_load(100)
    rig.polled_after(high)  # the gateway has seen the spike
    low = rig.set_load(10)
    assert (low - high) * 1000 < FOR_MS - 500, "spike too long for this test to mean anything"
    rig.polled_after(high + FOR_MS / 1000 + 0.5)  # held past for_ms, had it continued
    assert rig.transitions("overload", "fire") == 0
    assert rig.coil(1) is False


def test_a_sustained_overload_fires_after_for_ms_and_clears_only_below_clear_below(
        rig: Rig) -> None:
    high = rig.set_load(100)
    fired = wait_until(lambda: rig.coil(1), "the overload stop coil", FOR_MS / 1000 + 15)
    assert fired - high >= FOR_MS / 1000  # debounce: never before for_ms of report time
    assert rig.transitions("overload", "fire") == 1

    between = rig.set_load(60)  # under `above` but over `clear_below`: still on
    rig.polled_after(between + CLEAR_MS / 1000 + 0.5)
    assert rig.transitions("overload", "clear") == 0
    assert rig.coil(2) is False

    low = rig.set_load(10)
    cleared = wait_until(lambda: rig.coil(2), "the all-clear coil", CLEAR_MS / 1000 + 15)
    assert cleared - low >= CLEAR_MS / 1000
    assert rig.transitions("overload", "clear") == 1
    assert rig.metric("tandem_gw_modbus_writes_total", bus="plc", unit="press",
                      result="verified") >= 2


def test_the_bearing_fault_of_a_real_node_stops_both_modbus_devices(rig: Rig) -> None:
    assert rig.coil(0) is False
    spec = NodeSpec("node-01", "bearing_fault", seed=1, period_ms=100)
    node = rig.site.start_node(spec, rig.site.issue_node(spec))
    node.wait_for(r'"ev": ?"ack"', timeout=60)
    wait_until(lambda: rig.coil(0), "the PLC's stop coil, read by a separate client", 60)
    assert rig.transitions("bearing", "fire") == 1
    # written by the actuator process ([modbus] actuator = "process")
    assert rig.metric("tandem_gw_actuator_process_requests_total", result="verified") >= 1
    assert rig.metric("tandem_gw_actuator_process_up") == 1
    rig.slave.wait_for("modbus_write", timeout=30, point="stop", value=1)
    wait_until(lambda: rig.metric("tandem_gw_modbus_writes_total", bus="line1", unit="press",
                                  result="verified") == 1, "the RTU stop's read-back", 30)
    # the cloud never ran: the uplink kept failing, the reflex did not care
    assert rig.metric("tandem_gw_rule_transitions_total", rule="bearing",
                      transition="clear") == 0


def _processes(parent: int, module: str) -> list[int]:
    """Live children of `parent` running `python -m module` (read from /proc)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().split(b"\0")
            stat = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:  # gone meanwhile
            continue
        if module.encode() in cmdline and int(stat[1]) == parent and stat[0] != "Z":
            found.append(int(entry.name))
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def test_sigterm_ends_the_gateway_and_its_actuator_process_leaving_no_orphan(rig: Rig) -> None:
    # last in this module: it stops the gateway
    gateway = next(c for c in rig.site.children if c.name == "gateway")
    actuators = _processes(gateway.proc.pid, "tandem.gateway.modbus.actuatorproc")
    assert len(actuators) == 1, actuators
    gateway.stop()  # SIGTERM to the gateway's process group, as systemd sends it
    wait_until(lambda: not _alive(actuators[0]), "the actuator process to end", 15)
