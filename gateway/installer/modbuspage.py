"""The Modbus screen's routes: list buses and units, check a map, add a bus or unit, read now.

Changes are checked first (the loaders' messages, `file:line: field`), then
applied: map and Modbus file written atomically in a thread, the daemon's
Modbus service reloaded in-process (Gateway.reload_modbus) and an audit entry
recorded. "Read now" runs on the field-bus loop through the unit's bus
coordinator (its lanes and locks), so the page's loop and the reflex never
wait on the bus. One change at a time: applies are serialised.
"""

from __future__ import annotations

import asyncio
import json
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aiohttp import web

from tandem.gateway.installer import modbusedit, pages
from tandem.gateway.installer.audit import AuditTrail
from tandem.gateway.installer.rulesedit import write_atomically
from tandem.gateway.installer.sessions import Session
from tandem.gateway.modbus import busfile
from tandem.gateway.modbus.config import ModbusBus, ModbusUnit
from tandem.gateway.modbus.coordinator import RequestError
from tandem.gateway.modbus.registers import RegisterMapError
from tandem.gateway.modbus.service import ModbusService
from tandem.wire.tomlconfig import ConfigError

if TYPE_CHECKING:
    from tandem.gateway.runtime import Gateway

log = logging.getLogger(__name__)

READ_TIMEOUT_S = 10.0
SessionOf = web.RequestKey[Session]


def listing(service: ModbusService | None, added: set[str] | None = None) -> list[dict[str, Any]]:
    """Buses and units as the status and Modbus screens show them (poll rate, errors, backoff)."""
    if service is None:
        return []
    return [{"bus": name, "kind": c.bus.kind, "where": _where(c.bus),
             "added": name in (added or set()), "units": [
                 {"unit": u.config.name, "unit_id": u.config.unit_id, "poll_s": u.config.poll_s,
                  "polls": u.polls, "failed": u.failed, "backoff_s": u.backoff_s,
                  "map": str(u.config.map), "values": dict(u.values)} for u in c.units]}
            for name, c in service.coordinators.items()]


def _where(bus: ModbusBus) -> str:
    return f"{bus.host}:{bus.tcp_port}" if bus.kind == "tcp" else bus.port


class ModbusPage:
    """Routes for one gateway's Modbus buses, units and register maps."""

    def __init__(self, gateway: Gateway, audit: AuditTrail, session_key: SessionOf) -> None:
        self.gateway = gateway
        self.audit = audit
        self._session = session_key
        self.file = busfile.path_in(gateway.config.gateway.data_dir)
        self._applying = asyncio.Lock()

    def routes(self) -> list[web.RouteDef]:
        """The routes to add to the installer app."""
        return [web.get("/modbus", self._page), web.get("/api/modbus", self._list),
                web.get("/api/modbus/map", self._map),
                web.post("/api/modbus/check", self._check),
                web.post("/api/modbus/bus", self._add_bus),
                web.post("/api/modbus/unit", self._apply_unit),
                web.post("/api/modbus/read", self._read_now)]

    async def _page(self, request: web.Request) -> web.Response:
        return pages.modbus(request[self._session], str(self.file))

    async def _list(self, request: web.Request) -> web.Response:
        try:
            added, problem = {b.name for b in await self._file_buses()}, ""
        except ConfigError as exc:  # edited by hand since the start: say so, list the rest
            added, problem = set(), str(exc)
        return web.json_response({"file": str(self.file), "file_error": problem,
                                  "buses": listing(self.gateway.modbus, added)})

    async def _map(self, request: web.Request) -> web.Response:
        """The text of a running unit's register map (only maps the config names are read)."""
        unit = self._unit(request.query.get("bus", ""), request.query.get("unit", ""))
        if unit is None:
            return _refused("no such unit", status=404)
        text = await asyncio.to_thread(unit.map.read_text, encoding="utf-8")
        return web.json_response({"ok": True, "file": str(unit.map), "text": text})

    async def _check(self, request: web.Request) -> web.Response:
        """Validate a map as the file it would become (the unit's own, or a new one)."""
        data = await _json(request)
        try:
            path = self._map_path(data)
        except ConfigError as exc:
            return _refused(str(exc))
        verdict = modbusedit.check_map(str(data.get("text", "")), path)
        if verdict.regmap is None:
            return _refused(verdict.error, verdict.line)
        return web.json_response({"ok": True, "file": str(path),
                                  "points": len(verdict.regmap.points)})

    async def _add_bus(self, request: web.Request) -> web.Response:
        data = await _json(request)
        async with self._applying:
            try:
                bus = modbusedit.parse_bus(data, self.gateway.config.gateway.data_dir)
                buses = modbusedit.with_bus(await self._file_buses(), bus)
                await self._write_and_reload(buses)
            except (ConfigError, RegisterMapError) as exc:
                return _refused(str(exc))
            except OSError as exc:
                return _not_written(exc)
        self._record(request, "modbus-bus-added", bus=bus.name, kind=bus.kind,
                     where=_where(bus))
        return web.json_response({"ok": True, "bus": bus.name})

    async def _apply_unit(self, request: web.Request) -> web.Response:
        """Check the map and the unit, then write both and reload the Modbus service."""
        data = await _json(request)
        bus_name, text = str(data.get("bus", "")), str(data.get("text", ""))
        async with self._applying:
            try:
                path = self._map_path(data)
                verdict = modbusedit.check_map(text, path)
                if verdict.regmap is None:
                    return _refused(verdict.error, verdict.line)
                unit = modbusedit.parse_unit(data, path)
                existing = self._unit(bus_name, unit.name)
                buses = await self._file_buses()
                if existing is None or bus_name in {b.name for b in buses}:
                    buses = modbusedit.with_unit(buses, bus_name, unit)
                await self._write_and_reload(buses, (path, text))
            except (ConfigError, RegisterMapError) as exc:
                return _refused(str(exc), modbusedit.line_named(str(exc), self.file))
            except OSError as exc:
                return _not_written(exc)
        self._record(request, "modbus-unit-applied", bus=bus_name, unit=unit.name,
                     unit_id=unit.unit_id, map=str(path), points=len(verdict.regmap.points))
        return web.json_response({"ok": True, "unit": unit.name, "file": str(path),
                                  "points": len(verdict.regmap.points)})

    async def _read_now(self, request: web.Request) -> web.Response:
        """Read every point of a running unit now, through its bus coordinator."""
        data = await _json(request)
        bus_name, unit_name = str(data.get("bus", "")), str(data.get("unit", ""))
        service = self.gateway.modbus
        coordinator = service.coordinators.get(bus_name) if service else None
        state = next((u for u in coordinator.units if u.config.name == unit_name), None) \
            if coordinator else None
        if coordinator is None or state is None:
            return _refused(f"no running unit {unit_name!r} on bus {bus_name!r}", status=404)
        try:
            async with asyncio.timeout(READ_TIMEOUT_S):
                values = await self.gateway.fieldbus.run(coordinator.read_now(state))
        except RequestError as exc:
            return _refused(f"{bus_name}/{unit_name} (unit {state.config.unit_id}): {exc}",
                            status=502)
        except TimeoutError:
            return _refused(f"{bus_name}/{unit_name}: no answer within {READ_TIMEOUT_S:g} s",
                            status=504)
        points = [{"name": p.name, "value": values.get(p.name), "unit": p.unit,
                   "table": str(p.table), "address": p.address} for p in state.regmap.points]
        return web.json_response({"ok": True, "bus": bus_name, "unit": unit_name,
                                  "points": points})

    # -- helpers of the handlers ----------------------------------------------------

    def _unit(self, bus: str, name: str) -> ModbusUnit | None:
        """A unit the running service polls."""
        service = self.gateway.modbus
        coordinator = service.coordinators.get(bus) if service else None
        units = coordinator.bus.units if coordinator else ()
        return next((u for u in units if u.name == name), None)

    def _map_path(self, data: dict[str, Any]) -> Path:
        """A running unit's own map file; else a new file under <data_dir>/registers."""
        unit = self._unit(str(data.get("bus", "")), str(data.get("name", "")))
        if unit is not None:
            return unit.map
        return modbusedit.new_map_path(self.gateway.config.gateway.data_dir,
                                       str(data.get("map_name", "")))

    async def _file_buses(self) -> tuple[ModbusBus, ...]:
        return await asyncio.to_thread(busfile.load_buses, self.file)

    async def _write_and_reload(self, buses: tuple[ModbusBus, ...],
                                map_file: tuple[Path, str] | None = None) -> None:
        """Validate the whole file, write map then file, reload; nothing written if invalid."""
        text, section = modbusedit.file_text(buses, self.file, self.gateway.config.modbus)

        def write() -> None:
            if map_file is not None:
                map_file[0].parent.mkdir(parents=True, exist_ok=True)
                write_atomically(*map_file)
            write_atomically(self.file, text)

        await asyncio.to_thread(write)
        await self.gateway.reload_modbus(section)

    def _record(self, request: web.Request, event: str, **detail: Any) -> None:
        self.audit.record(event, request[self._session].user, request.remote or "?", **detail)


async def _json(request: web.Request) -> dict[str, Any]:
    try:
        data = await request.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        return {}
    return data if isinstance(data, dict) else {}


def _not_written(exc: OSError) -> web.Response:
    """A file the gateway could not write (a full disk, say): said loudly, nothing half-done."""
    log.warning("installer: modbus change not applied: %s", exc)
    return _refused(f"not applied: cannot write {exc.filename or 'a file'}: "
                    f"{exc.strerror or exc}", status=507)


def _refused(error: str, line: int = 0, status: int = 422) -> web.Response:
    log.warning("installer: modbus request refused: %s", error)
    return web.json_response({"ok": False, "error": error, "line": line}, status=status)
