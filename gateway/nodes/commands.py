"""Commands for nodes, handed out when a node polls GET /c (docs/protocol.md section 3).

The gateway never opens a conversation with a node: commands wait here, in a
bounded queue per node, until the node's next poll takes the oldest. Ids are
given out when a command is first served, above the id the node says it last
applied, so they stay strictly increasing per node even across a gateway
restart. A command is confirmed when a later poll says `a >= id`.

`NodeCommands` is the gateway's `NodeCommander` (the rules' node_alarm
action) and what the raw requests use to ask a node for a snippet.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import cbor2
from prometheus_client import CollectorRegistry, Counter, Gauge

from tandem.gateway.config import CommandsSection

log = logging.getLogger(__name__)


@dataclass
class _Queued:
    fields: dict[str, Any]
    done: asyncio.Future[bool]
    id: int = 0  # 0 until first served
    served: list[float] = field(default_factory=list)


class NodeCommands:
    """Bounded per-node command queues served by GET /c polls."""

    def __init__(self, config: CommandsSection | None = None,
                 registry: CollectorRegistry | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.config = config or CommandsSection()
        self._clock = clock
        self._queues: dict[str, collections.deque[_Queued]] = {}
        self._next_id: dict[str, int] = {}
        self._last_poll: dict[str, float] = {}
        self._results = Counter("tandem_gw_node_commands",
                                "Node commands queued, confirmed by the node, or dropped",
                                ["result"], registry=registry)
        for result in ("queued", "confirmed", "dropped"):
            self._results.labels(result)
        self._waiting = Gauge("tandem_gw_node_commands_waiting",
                              "Node commands not yet confirmed", registry=registry)

    def send(self, device: str, fields: Mapping[str, Any]) -> asyncio.Future[bool]:
        """Queue a command; its future is True once the node confirmed it, False if dropped."""
        if "id" in fields:
            raise ValueError("the id of a command is the queue's to give")
        queue = self._queues.setdefault(device, collections.deque())
        if len(queue) >= self.config.queue:
            victim = next((q for q in queue if q.id == 0), queue[0])
            queue.remove(victim)
            self._finish(victim, False, "dropped")
            log.warning("command queue of %s full: dropped %s", device, victim.fields)
        queued = _Queued(dict(fields), asyncio.get_running_loop().create_future())
        queue.append(queued)
        self._results.labels("queued").inc()
        self._waiting.inc()
        return queued.done

    async def command(self, device: str, path: str, payload: Mapping[str, Any]) -> bool:
        """NodeCommander: send {path: payload} (e.g. "alarm"); True once the node confirmed it.

        Waits at most ack_timeout_s; the command stays queued after that.
        """
        done = self.send(device, {path.strip("/"): dict(payload)})
        try:
            return await asyncio.wait_for(asyncio.shield(done), self.config.ack_timeout_s)
        except TimeoutError:
            return False

    def poll(self, device: str, applied: int) -> bytes:
        """The answer to GET /c?a=applied: the next command as CBOR, or b"" for none."""
        self._last_poll[device] = self._clock()
        queue = self._queues.get(device)
        if not queue:
            self._next_id[device] = max(self._next_id.get(device, 1), applied + 1)
            return b""
        while queue and 0 < queue[0].id <= applied:
            self._finish(queue.popleft(), True, "confirmed")
        if not queue:
            return b""
        head = queue[0]
        if head.id == 0:
            head.id = max(self._next_id.get(device, 1), applied + 1)
            self._next_id[device] = head.id + 1
        head.served.append(self._clock())
        return cbor2.dumps({"id": head.id, **head.fields}, canonical=True)

    def reachable(self, device: str) -> bool:
        """True when device polled for commands within reachable_s."""
        last = self._last_poll.get(device)
        return last is not None and self._clock() - last <= self.config.reachable_s

    def waiting(self, device: str) -> int:
        """Commands queued for device and not yet confirmed."""
        return len(self._queues.get(device, ()))

    def close(self) -> None:
        """Fail every waiting command (the gateway is stopping)."""
        for queue in self._queues.values():
            while queue:
                self._finish(queue.popleft(), False, "dropped")

    def _finish(self, queued: _Queued, ok: bool, result: str) -> None:
        if not queued.done.done():
            queued.done.set_result(ok)
        self._results.labels(result).inc()
        self._waiting.dec()
