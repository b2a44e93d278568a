"""Node commands: bounded per-node queues served by GET /c, confirmed by the node's next poll."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cbor2
import pytest

from tandem.gateway.access.commands import CommandsResource
from tandem.gateway.config import CommandsSection
from tandem.gateway.nodes.commands import NodeCommands
from tandem.gateway.rules.actions import Firing, NodeAlarm
from tandem.gateway.rules.definitions import NodeAlarmSpec
from tests.gateway.access_peers import RecordingSink, ServerThread, Site
from tests.nodeproc import NodeProcess, write_node_config

pytestmark = pytest.mark.timeout(90)


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def served(commands: NodeCommands, device: str, applied: int) -> dict[str, Any] | None:
    body = commands.poll(device, applied)
    return cbor2.loads(body) if body else None


def test_ids_are_given_above_what_the_node_applied_and_resent_until_confirmed() -> None:
    async def main() -> None:
        commands = NodeCommands(clock=Clock())
        assert served(commands, "n", 41) is None  # a node that applied 41 before we started
        first = commands.send("n", {"led": True})
        second = commands.send("n", {"relay": False})
        assert served(commands, "n", 41) == {"id": 42, "led": True}
        assert served(commands, "n", 41) == {"id": 42, "led": True}  # not confirmed: again
        assert not first.done()
        assert served(commands, "n", 42) == {"id": 43, "relay": False}
        assert first.result() is True and not second.done()
        assert served(commands, "n", 43) is None and second.result() is True
        assert commands.waiting("n") == 0

    asyncio.run(main())


def test_a_full_queue_drops_the_oldest_unserved_command() -> None:
    async def main() -> None:
        commands = NodeCommands(CommandsSection(queue=2), clock=Clock())
        a = commands.send("n", {"led": True})
        assert served(commands, "n", 0) == {"id": 1, "led": True}  # a is out to the node
        b = commands.send("n", {"led": False})
        c = commands.send("n", {"buzzer_ms": 100})
        assert b.result() is False and not a.done() and not c.done()
        assert served(commands, "n", 1) == {"id": 2, "buzzer_ms": 100}
        commands.close()
        assert c.result() is False

    asyncio.run(main())


def test_a_node_is_reachable_while_it_polls_and_an_unconfirmed_command_times_out() -> None:
    async def main() -> None:
        clock = Clock()
        commands = NodeCommands(CommandsSection(ack_timeout_s=0.1, reachable_s=10), clock=clock)
        assert not commands.reachable("n")
        commands.poll("n", 0)
        assert commands.reachable("n")
        clock.now += 11
        assert not commands.reachable("n")
        assert await commands.command("n", "alarm", {"rule": "hot", "active": True}) is False
        assert served(commands, "n", 0) == {"id": 1, "alarm": {"rule": "hot", "active": True}}

    asyncio.run(main())


@pytest.fixture
def server(site: Site) -> Iterator[tuple[ServerThread, NodeCommands]]:
    thread = ServerThread(site.config(), RecordingSink())
    commands = NodeCommands(CommandsSection(ack_timeout_s=30))
    s = thread.server
    s.resources[("c",)] = CommandsResource(commands, s.policy, s.stats)
    with thread:
        yield thread, commands


def test_a_micropython_node_applies_the_rules_alarm_and_a_rate_change(
        tmp_path: Path, site: Site, server: tuple[ServerThread, NodeCommands]) -> None:
    thread, commands = server
    sensor = {"model": "accel", "rate_hz": 800, "samples": 128, "scenario": "normal", "seed": 3}
    config = write_node_config(tmp_path / "node", site.device, thread.port, period_ms=250,
                               sensor=sensor, commands={"poll_ms": 250},
                               coap={"ack_timeout_ms": 300, "max_retransmit": 2})
    alarm = NodeAlarm("tell-node", NodeAlarmSpec(), commands)
    firing = Firing("hot", "node-01", 0, True, 2, {"temp": 81.0})

    async def act() -> tuple[bool, bool]:
        rate = commands.send("node-01", {"rate_hz": 400, "samples": 64})
        confirmed = await alarm.run(firing)  # the rule engine's node_alarm action
        return confirmed, await asyncio.wait_for(rate, 30)

    with NodeProcess(config, heap="144K") as node:
        node.wait_for("connected", timeout=30)
        assert thread.run(act(), timeout=40) == (True, True)
        applied = node.wait_for("command", where=lambda e: "alarm" in e["applied"])
    assert [c["id"] for c in node.of("command")] == [1, 2]
    assert sorted(node.of("command")[0]["applied"]) == ["rate_hz", "samples"]
    assert applied["applied"] == ["alarm"]
    assert commands.waiting("node-01") == 0
