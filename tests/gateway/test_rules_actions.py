"""Specification of the reflex acting: a rule fires, the stop coil is set over Modbus TCP and
read back by a separate client, and the Event reaches a real outbox ahead of summaries."""

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path

import pytest
from pymodbus.client import AsyncModbusTcpClient

from tandem.gateway.actuator import ActuatorError
from tandem.gateway.metrics import GatewayMetrics
from tandem.gateway.modbus.service import actuator_port
from tandem.gateway.pipeline.ingress import Ingress
from tandem.gateway.pipeline.journal import Journal
from tandem.gateway.reports import DeviceReport
from tandem.gateway.rules.loader import parse_rules_text
from tandem.gateway.rules.reflex import Outcome, Reflex
from tandem.gateway.store.database import DATABASE_FILE, GatewayDatabase
from tandem.gateway.store.outbox import Outbox, Priority
from tandem.tools.modbus_sim import modbus_controller
from tandem.wire.batch import Event, Record, Summary
from tandem.wire.report import Report
from tests.ports import free_port

RULES = """\
version = 1
[action.stop_press]
kind = "emergency_stop"
host = "127.0.0.1"
port = {port}
unit = 1
coil = 3
[action.hold_speed]
kind = "emergency_stop"
host = "127.0.0.1"
port = {port}
unit = 1
register = 7
value = 0
[action.siren]
kind = "local_alarm"
file = "{flag}"
text = "on"
[[rule]]
name = "overheat"
severity = 3
when = {{ input = "temp", above = 80.0, clear_below = 75.0 }}
actions = ["stop_press", "siren"]
[[rule]]
name = "speed"
when = {{ input = "rpm", above = 3000.0 }}
actions = ["hold_speed"]
"""


def _report(seq: int, t_ms: int, **values: float) -> DeviceReport:
    return DeviceReport("press-01", Report(seq, 1, t_ms, values), received_ms=t_ms)


async def _coil(port: int, address: int) -> bool:
    client = AsyncModbusTcpClient("127.0.0.1", port=port, timeout=2, retries=0)
    try:
        assert await client.connect()
        read = await client.read_coils(address, count=1, device_id=1)
        return bool(read.bits[0])
    finally:
        client.close()


def _outbox(tmp_path: Path) -> Outbox:
    return Outbox(GatewayDatabase(tmp_path / DATABASE_FILE))


async def _seal_all(outbox: Outbox) -> list[Record]:
    captured: list[Sequence[Record]] = []

    def build(seq: int, records: Sequence[Record]) -> bytes:
        captured.append(records)
        return b"x"

    await outbox.seal_or_pending(100, build, 0)
    return list(captured[0])


def _no_stray_tasks() -> None:
    assert asyncio.all_tasks() == {asyncio.current_task()}


def test_a_firing_rule_sets_the_coil_verified_and_files_the_event_first(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with modbus_controller() as port:
            outbox = _outbox(tmp_path)
            await outbox.put([Summary("press-01", "temp", 0, 1000, 1, 20.0, 20.0, 20.0, 20.0)],
                             Priority.SUMMARY)
            rules = parse_rules_text(RULES.format(port=port, flag=tmp_path / "siren"))
            outcomes: list[Outcome] = []
            reflex = Reflex(rules, outbox, GatewayMetrics(), on_outcome=outcomes.append)
            assert not await _coil(port, 3)
            reflex.take(_report(1, 1000, temp=70.0))
            reflex.take(_report(2, 2000, temp=85.5))
            await reflex.settle()
            assert await _coil(port, 3)                      # read back by another client
            assert sorted((o.action, o.ok) for o in outcomes) == [("siren", True),
                                                                  ("stop_press", True)]
            assert (tmp_path / "siren").read_text() == "on"
            records = await _seal_all(outbox)
            await reflex.close()
            outbox.database.close()
        fired = records[0]
        assert isinstance(fired, Event)
        assert (fired.device, fired.name, fired.t_ms, fired.severity) == \
            ("press-01", "overheat", 2000, 3)
        assert fired.values == {"temp": 85.5, "temp@-1": 70.0}
        outcome_events = {r.name: r.values["ok"] for r in records[1:3] if isinstance(r, Event)}
        assert outcome_events == {"overheat/stop_press": 1.0, "overheat/siren": 1.0}
        assert isinstance(records[3], Summary)              # the summary waited behind them
        _no_stray_tasks()

    asyncio.run(scenario())


def test_the_port_reads_back_registers_and_coils_and_reports_refusals() -> None:
    async def scenario() -> None:
        async with modbus_controller() as port:
            writer = actuator_port("127.0.0.1", port, 0.5)
            assert await writer.write_register(1, 7, 1234)
            assert await writer.write_coil(1, 5, True)
            with pytest.raises(ActuatorError, match="register write: exception_02"):
                await writer.write_register(1, 9999, 1)     # outside the controller's map
            assert await writer.write_coil(1, 5, False)     # the connection is still good
            await writer.close()
        _no_stray_tasks()

    asyncio.run(scenario())


def test_an_unreachable_controller_is_reported_and_never_blocks_the_pipeline(
        tmp_path: Path) -> None:
    async def scenario() -> None:
        dead_port = free_port()                             # nothing listens there
        outbox = _outbox(tmp_path)
        rules = parse_rules_text(RULES.format(port=dead_port, flag=tmp_path / "siren"))
        outcomes: list[Outcome] = []
        reflex = Reflex(rules, outbox, GatewayMetrics(), on_outcome=outcomes.append)
        reflex.take(_report(1, 1000, rpm=3500.0))           # returns at once: I/O is a task
        assert outcomes == []
        await reflex.settle()
        (outcome,) = outcomes
        assert (outcome.action, outcome.ok) == ("hold_speed", False)
        assert "ActuatorError" in outcome.error
        records = await _seal_all(outbox)
        failed = [r for r in records if isinstance(r, Event) and r.name == "speed/hold_speed"]
        assert failed and failed[0].severity == 3 and failed[0].values["ok"] == 0.0
        await reflex.close()
        outbox.database.close()
        _no_stray_tasks()

    asyncio.run(scenario())


def test_the_ingress_hands_each_new_report_to_the_reflex(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with modbus_controller() as port:
            outbox = _outbox(tmp_path)
            journal = Journal(outbox.database, outbox)
            metrics = GatewayMetrics()
            done = asyncio.Event()
            rules = parse_rules_text(RULES.format(port=port, flag=tmp_path / "siren"))
            reflex = Reflex(rules, outbox, metrics,
                            on_outcome=lambda o: done.set() if o.action == "stop_press" else None)
            ingress = Ingress(journal, 100)
            ingress.observers.append(reflex.take)
            stop = asyncio.Event()
            task = asyncio.create_task(ingress.run(stop))
            assert await ingress.submit(_report(1, 1000, temp=99.0))
            await asyncio.wait_for(done.wait(), 10)
            assert await _coil(port, 3)
            assert await ingress.submit(_report(1, 1000, temp=99.0))  # a repeat: not judged
            stop.set()
            await task
            await reflex.close()
            outbox.database.close()
        value = metrics.registry.get_sample_value(
            "tandem_gw_rule_transitions_total", {"rule": "overheat", "transition": "fire"})
        assert value == 1.0
        count = metrics.registry.get_sample_value(
            "tandem_gw_action_seconds_count", {"action": "stop_press", "result": "ok"})
        assert count == 1.0
        _no_stray_tasks()

    asyncio.run(scenario())


def test_a_fault_in_the_reflex_never_reaches_the_ingress(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    async def scenario() -> None:
        store = _outbox(tmp_path)
        metrics = GatewayMetrics()
        reflex = Reflex(parse_rules_text(RULES.format(port=1, flag="x")), store, metrics)

        def broken(*args: object) -> None:
            raise ZeroDivisionError("bug")

        reflex.engine.evaluate = broken  # type: ignore[method-assign]
        reflex.take(_report(1, 1000, temp=99.0))
        await reflex.close()
        store.database.close()
        assert metrics.registry.get_sample_value("tandem_gw_reflex_faults_total") == 1.0

    asyncio.run(scenario())
    assert "reflex failed on a report" in caplog.text


def test_the_policy_action_limit_never_holds_back_an_emergency_stop(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with modbus_controller() as port:
            outbox = _outbox(tmp_path)
            rules = parse_rules_text(RULES.format(port=port, flag=tmp_path / "siren"))
            outcomes: list[Outcome] = []
            reflex = Reflex(rules, outbox, GatewayMetrics(), on_outcome=outcomes.append)
            reflex.may_act = lambda: False  # the policy's limit is used up
            reflex.take(_report(1, 1000, temp=85.5))
            await reflex.settle()
            assert await _coil(port, 3)
            assert [(o.action, o.ok) for o in outcomes] == [("stop_press", True)]
            assert not (tmp_path / "siren").exists()  # the siren was limited
            await reflex.close()
            outbox.database.close()

    asyncio.run(scenario())


REASSERT_RULES = """\
version = 1
[action.stop_press]
kind = "emergency_stop"
host = "127.0.0.1"
port = {port}
unit = 1
coil = 3
[[rule]]
name = "overheat"
severity = 3
when = {{ input = "temp", above = 80.0, clear_below = 75.0 }}
actions = ["stop_press"]
"""


async def _until(check: Callable[[], Awaitable[bool]], timeout: float = 30.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not await check():
        assert asyncio.get_running_loop().time() < deadline, "condition not reached"
        await asyncio.sleep(0.02)


def test_a_stop_that_failed_while_the_controller_was_away_is_written_when_it_returns(
        tmp_path: Path) -> None:
    async def scenario() -> None:
        port = free_port()                                  # the controller is away
        outbox = _outbox(tmp_path)
        metrics = GatewayMetrics()
        outcomes: list[Outcome] = []
        reflex = Reflex(parse_rules_text(REASSERT_RULES.format(port=port)), outbox, metrics,
                        on_outcome=outcomes.append, reassert_s=0.05, reassert_max_s=0.2)
        reflex.take(_report(1, 1000, temp=85.0))
        await reflex.settle()
        assert [(o.action, o.ok) for o in outcomes] == [("stop_press", False)]
        assert reflex.reasserting == 1

        async def coil_set() -> bool:
            return await _coil(port, 3)

        async with modbus_controller(port=port):            # back, rule still active
            await _until(coil_set)
            await _until(lambda: _true(reflex.reasserting == 0))
        await reflex.close()
        outbox.database.close()
        assert [(o.action, o.ok) for o in outcomes] == [("stop_press", False),
                                                        ("stop_press", True)]
        assert (metrics.registry.get_sample_value("tandem_gw_safety_reasserts_total",
                                                  {"action": "stop_press", "result": "ok"})
                == 1)
        _no_stray_tasks()

    asyncio.run(scenario())


def test_re_asserting_ends_when_the_rule_clears(tmp_path: Path) -> None:
    async def scenario() -> None:
        port = free_port()
        outbox = _outbox(tmp_path)
        reflex = Reflex(parse_rules_text(REASSERT_RULES.format(port=port)), outbox,
                        GatewayMetrics(), reassert_s=0.05, reassert_max_s=0.2)
        reflex.take(_report(1, 1000, temp=85.0))
        await reflex.settle()
        assert reflex.reasserting == 1
        reflex.take(_report(2, 2000, temp=70.0))            # the rule clears
        await _until(lambda: _true(reflex.reasserting == 0))
        async with modbus_controller(port=port):
            assert not await _coil(port, 3)                 # nobody writes it any more
        await reflex.close()
        outbox.database.close()
        _no_stray_tasks()

    asyncio.run(scenario())


def test_close_ends_re_asserting_a_controller_that_never_returns(tmp_path: Path) -> None:
    async def scenario() -> None:
        outbox = _outbox(tmp_path)
        reflex = Reflex(parse_rules_text(REASSERT_RULES.format(port=free_port())), outbox,
                        GatewayMetrics(), reassert_s=0.05)
        reflex.take(_report(1, 1000, temp=85.0))
        await reflex.settle()
        assert reflex.reasserting == 1
        await asyncio.wait_for(reflex.close(), 10)
        assert reflex.reasserting == 0
        outbox.database.close()
        _no_stray_tasks()

    asyncio.run(scenario())


async def _true(value: bool) -> bool:
    return value
