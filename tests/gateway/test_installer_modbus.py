"""The installer page's Modbus screen: maps checked at their line, buses and units applied
in-process, "read now" through the bus coordinator, and the Modbus file the daemon reads.

The handler test runs a real gateway (in-process, plain-HTTP test server in
front of its installer app) against pymodbus's own TCP server.
"""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from pymodbus.client import AsyncModbusTcpClient

from tandem.gateway import preflight
from tandem.gateway.config import GatewayConfig, load_config
from tandem.gateway.installer.modbusedit import check_map, new_map_path, with_unit
from tandem.gateway.installer.password import set_password
from tandem.gateway.installer.server import InstallerServer
from tandem.gateway.installer.sessions import COOKIE
from tandem.gateway.modbus import busfile
from tandem.gateway.modbus.actuatorclient import ProcessPort
from tandem.gateway.modbus.config import ModbusBus, ModbusSection, ModbusUnit
from tandem.gateway.reports import DeviceReport
from tandem.gateway.runtime import Gateway
from tandem.tools.modbus_sim import modbus_controller
from tandem.tools.site import local_site
from tandem.wire.clock import now_ms
from tandem.wire.report import Report
from tandem.wire.tomlconfig import ConfigError
from tests.gateway.installerkit import PASSWORD, Browser
from tests.gateway.installerkit import csrf_token as _csrf
from tests.waiting import until

PUMP_MAP = """\
version = 1
name = "pump"

[[point]]
name = "level"
table = "holding"
address = 0
type = "uint16"
scale = 0.1
unit = "%"

[[point]]
name = "running"
table = "coil"
address = 3
"""
BAD_LINE = 9  # `scale = 0.1` made `scale = -1`
BAD_MAP = PUMP_MAP.replace("scale = 0.1", "scale = -1")


def test_a_map_error_names_the_file_and_its_line(tmp_path: Path) -> None:
    path = tmp_path / "registers" / "pump.toml"
    verdict = check_map(BAD_MAP, path)
    assert verdict.regmap is None and verdict.line == BAD_LINE
    assert verdict.error.startswith(f"{path}:{BAD_LINE}: point[0] (level).scale:"), verdict.error
    broken = check_map(PUMP_MAP.replace('name = "running"', 'name = "running'), path)
    assert broken.regmap is None and broken.line == 13, broken.error  # a TOML syntax error
    good = check_map(PUMP_MAP, path).regmap
    assert good is not None and [p.name for p in good.points] == ["level", "running"]


def test_map_names_stay_plain_file_names_under_registers(tmp_path: Path) -> None:
    assert new_map_path(tmp_path, "pump.toml") == tmp_path / "registers" / "pump.toml"
    for name in ("../gateway.toml", "/etc/x.toml", "pump", ".hidden.toml", ""):
        with pytest.raises(ConfigError, match="map file name"):
            new_map_path(tmp_path, name)


def test_the_modbus_file_round_trips_and_names_its_lines(tmp_path: Path) -> None:
    path = busfile.path_in(tmp_path)
    unit = ModbusUnit(name="pump", unit_id=3, map=tmp_path / "registers" / "pump.toml",
                      poll_s=0.5)
    bus = ModbusBus(name="plc", kind="tcp", host="10.0.0.5", units=(unit,))
    text = busfile.render((bus,), tmp_path)
    assert 'map = "registers/pump.toml"' in text and "baudrate" not in text  # defaults left out
    assert busfile.parse_buses(text, path) == (bus,)
    with pytest.raises(ConfigError, match=rf"^{path}:\d+: bus\[0\] \(plc\)\.units\[0\] "
                                          r"\(pump\)\.unit_id: expected less than"):
        busfile.parse_buses(text.replace("unit_id = 3", "unit_id = 300"), path)
    with pytest.raises(ConfigError, match="unit id 3 is used twice"):
        with_unit((bus,), "plc", ModbusUnit(name="fan", unit_id=3, map=unit.map))


def test_a_bus_in_gateway_toml_and_the_modbus_file_is_refused(tmp_path: Path) -> None:
    path = busfile.path_in(tmp_path)
    inline = ModbusSection(bus=(ModbusBus(name="plc", kind="tcp", host="10.0.0.5"),))
    path.write_text(busfile.render((ModbusBus(name="plc", kind="tcp", host="10.0.0.6"),),
                                   tmp_path))
    with pytest.raises(ConfigError, match=r"bus\[0\]\.name: 'plc' is also in gateway.toml"):
        busfile.effective(inline, tmp_path)
    assert busfile.effective(ModbusSection(), tmp_path / "elsewhere").bus == ()


def test_a_hand_broken_modbus_file_stops_the_start_naming_its_line(tmp_path: Path) -> None:
    config = _config(tmp_path)
    path = busfile.path_in(config.gateway.data_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text('version = 1\n\n[[bus]]\nname = "plc"\nkind = "tcp"\nhots = "10.0.0.5"\n')
    with pytest.raises(ConfigError, match=rf"^{path}:6: bus\[0\] \(plc\)\.hots: unknown field"):
        preflight.check(config)  # what `tandem-gateway run` and `check-config` do first


# -- the screen against a running gateway ------------------------------------------------


# A stop naming a bus that only the page will add: it must go through that bus once added.
STOP_RULES = """\
version = 1

[action.stop_pump]
kind = "emergency_stop"
bus = "plc"
unit = 1
coil = 3

[[rule]]
name = "overflow"
when = { input = "level", above = 100.0 }
actions = ["stop_pump"]
"""


def _config(tmp_path: Path) -> GatewayConfig:
    site = local_site(tmp_path / "site", rules=STOP_RULES)
    return load_config(site.root / "gateway.toml", environ={
        "TANDEM_GW_UPLINK_URL": "", "TANDEM_GW_METRICS_PORT": "0",
        "TANDEM_GW_INSTALLER_ENABLED": "false", "TANDEM_GW_COAP_PORT": "0"})


async def _logged_in(server: InstallerServer) -> tuple[Browser, str]:
    client = Browser(TestClient(TestServer(server.app())))
    await client.client.start_server()
    csrf = await _csrf(client)
    login = await client.post("/login", data={"password": PASSWORD, "csrf": csrf},
                              allow_redirects=False)
    assert login.status == 303
    page = await (await client.get("/modbus")).text()
    assert 'id="map-text"' in page
    return client, await _csrf_meta(client)


async def _csrf_meta(client: Browser) -> str:
    page = await (await client.get("/modbus")).text()
    return page.split('name="csrf-token" content="', 1)[1].split('"', 1)[0]


async def _post(client: Browser, csrf: str, what: str, data: dict[str, Any]) -> Any:
    response = await client.client.post(f"/api/modbus/{what}", json=data, headers={
        "Cookie": f"{COOKIE}={client.cookie}", "X-CSRF-Token": csrf})
    return response.status, await response.json()


def test_screen_adds_a_bus_and_unit_applies_in_process_and_reads_now(tmp_path: Path) -> None:
    config = _config(tmp_path)
    data_dir = config.gateway.data_dir
    set_password(data_dir, PASSWORD)
    threads = set(threading.enumerate())

    async def scenario() -> None:
        async with modbus_controller(unit=1) as port:
            gateway = Gateway(config)
            await gateway.start()
            server = InstallerServer(config.installer, gateway, gateway.live)
            client, csrf = await _logged_in(server)
            try:
                await _apply_and_read(gateway, server, client, csrf, port)
            finally:
                await client.close()
                await gateway.stop()
            again = Gateway(config)  # the next start polls what the page applied
            try:
                assert again.modbus is not None
                assert [u.config.name for u in again.modbus.coordinators["plc"].units] == \
                    ["pump", "ghost"]
            finally:
                await again.stop()

    asyncio.run(scenario())
    assert set(threading.enumerate()) <= threads  # the field-bus threads ended


async def _coil(port: int, address: int) -> bool:
    """Coil `address` of unit 1, read with a client of the test's own."""
    client = AsyncModbusTcpClient("127.0.0.1", port=port, timeout=1, retries=0)
    try:
        await client.connect()
        reply = await client.read_coils(address, count=1, device_id=1)
        return not reply.isError() and bool(reply.bits[0])
    finally:
        client.close()


async def _apply_and_read(gateway: Gateway, server: InstallerServer, client: Browser,
                          csrf: str, port: int) -> None:
    forged = await client.post("/api/modbus/bus", json={"name": "x"})
    assert forged.status == 403
    bus = {"name": "plc", "kind": "tcp", "host": "127.0.0.1", "tcp_port": port, "port": "",
           "timeout_s": 0.3}
    status, body = await _post(client, csrf, "bus", {**bus, "tcp_port": 70000})
    assert status == 422 and body["error"].startswith("new bus: tcp_port: expected less")
    assert await _post(client, csrf, "bus", bus) == (200, {"ok": True, "bus": "plc"})
    assert gateway.modbus is not None and list(gateway.modbus.coordinators) == ["plc"]

    unit = {"bus": "plc", "name": "pump", "unit_id": 1, "poll_s": 0.1, "map_name": "pump.toml"}
    status, body = await _post(client, csrf, "unit", {**unit, "text": BAD_MAP})
    assert status == 422 and body["line"] == BAD_LINE and ".scale:" in body["error"]
    assert not new_map_path(gateway.config.gateway.data_dir, "pump.toml").exists()
    status, body = await _post(client, csrf, "check", {**unit, "text": PUMP_MAP})
    assert (status, body["points"]) == (200, 2)
    status, body = await _post(client, csrf, "unit", {**unit, "text": PUMP_MAP})
    assert (status, body["points"]) == (200, 2), body

    coordinator = gateway.modbus.coordinators["plc"]
    await until(lambda: coordinator.unit("pump").polls >= 2, "the new unit polled")
    stop = gateway.ports.bus("plc")  # emergency stops moved to the new bus (actuator process)
    assert isinstance(stop, ProcessPort) and (stop.host, stop.port, stop.bus) == \
        ("127.0.0.1", port, "plc")
    writer = AsyncModbusTcpClient("127.0.0.1", port=port, timeout=1, retries=0)
    await writer.connect()
    await writer.write_register(0, 1234, device_id=1)
    writer.close()
    status, body = await _post(client, csrf, "read", {"bus": "plc", "unit": "pump"})
    assert status == 200
    assert {p["name"]: p["value"] for p in body["points"]} == \
        {"level": pytest.approx(123.4), "running": 0.0}

    ghost = {**unit, "name": "ghost", "unit_id": 9, "map_name": "ghost.toml", "text": PUMP_MAP}
    assert (await _post(client, csrf, "unit", ghost))[0] == 200
    status, body = await _post(client, csrf, "read", {"bus": "plc", "unit": "ghost"})
    assert status == 502 and "exception_04" in body["error"]
    listed = await (await client.get("/api/modbus")).json()
    assert [(u["unit"], u["map"]) for u in listed["buses"][0]["units"]] == [
        ("pump", str(new_map_path(gateway.config.gateway.data_dir, "pump.toml"))),
        ("ghost", str(new_map_path(gateway.config.gateway.data_dir, "ghost.toml")))]
    assert listed["buses"][0]["added"] is True and listed["file_error"] == ""
    status = await client.get("/api/status")  # the status page lists them too
    assert status.content_type == "application/json"
    assert [u["unit"] for u in (await status.json())["modbus"][0]["units"]] == ["pump", "ghost"]

    overflow = Report(1, 1, now_ms(), {"level": 150.0})
    assert await gateway.ingress.submit(DeviceReport("tank-1", overflow, now_ms()))
    stops = coordinator.metrics.writes.labels("plc", "pump", "verified")
    await until(lambda: stops._value.get() >= 1, "the stop written through the added bus")
    assert await _coil(port, 3)

    server_file = busfile.path_in(gateway.config.gateway.data_dir)
    server_file.write_text(server_file.read_text() + "oops\n")  # a hand edit gone wrong
    listed = await (await client.get("/api/modbus")).json()
    assert listed["file_error"].startswith(f"{server_file}: not valid TOML")
    assert [u["unit"] for u in listed["buses"][0]["units"]] == ["pump", "ghost"]  # still polled
    server_file.write_text(server_file.read_text().removesuffix("oops\n"))
    assert [e.event for e in server.audit.pending] == [
        "login", "modbus-bus-added", "modbus-unit-applied", "modbus-unit-applied"]
