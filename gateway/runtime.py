"""Wires the gateway's layers together: access -> pipeline -> outbox -> uplink.

`Gateway.start()` brings the layers up from the outbox outwards (so nothing is
accepted before it can be stored), `stop()` takes them down from the edge
inwards and stores every open window before the outbox closes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Coroutine
from typing import Any

from prometheus_client import start_http_server

from tandem.gateway.access.config import AccessConfig
from tandem.gateway.access.server import CoapDtlsServer
from tandem.gateway.cloudlink.uplink import Uplink
from tandem.gateway.config import GatewayConfig
from tandem.gateway.identity.keystore import GatewayKeyStore
from tandem.gateway.identity.kinds import open_keystore
from tandem.gateway.metrics import GatewayMetrics
from tandem.gateway.modbus.fieldbus import CrossLoopSink, FieldbusThread
from tandem.gateway.modbus.service import ModbusService
from tandem.gateway.nodes.services import NodeServices
from tandem.gateway.pipeline.ingress import Ingress
from tandem.gateway.pipeline.journal import Journal
from tandem.gateway.pipeline.summarise import SummaryPipeline
from tandem.gateway.pipeline.windows import TumblingWindows
from tandem.gateway.policy.service import SecurityService
from tandem.gateway.rules.actions import ActuatorPorts
from tandem.gateway.rules.local_control import LocalControl
from tandem.gateway.store.database import GatewayDatabase
from tandem.gateway.store.outbox import Outbox

log = logging.getLogger(__name__)


class Gateway:
    """One running gateway instance."""

    def __init__(self, config: GatewayConfig, keystore: GatewayKeyStore | None = None) -> None:
        self.config = config
        self.metrics = GatewayMetrics()
        self.keystore = keystore or open_keystore(config.identity, config.gateway.data_dir)
        self.database = GatewayDatabase(config.gateway.data_dir / "gateway.sqlite3")
        self.outbox = Outbox(self.database, config.outbox.max_records)
        self.journal = Journal(self.database, self.outbox)
        recovery = self.journal.recover()
        self.ingress = Ingress(self.journal, config.pipeline.max_pending, recovery.last)
        # Modbus (polls and emergency stops) runs on its own thread and loop.
        self.fieldbus = FieldbusThread()
        self._modbus_sink = CrossLoopSink(self.ingress)
        self.modbus = ModbusService(config.modbus, self._modbus_sink, self.metrics.registry) \
            if config.modbus.bus else None
        ports = ActuatorPorts(self.modbus.actuator_factory(), self.modbus.coordinators) \
            if self.modbus else None
        # Node commands (GET /c), raw snippets (POST /raw), the cloud's raw requests.
        self.nodes = NodeServices(config, self.database, self.outbox, self.keystore, self.metrics)
        self.local = LocalControl.from_config(config, self.outbox, self.metrics, ports=ports,
                                              offload=self.fieldbus.run,
                                              commander=self.nodes.commands)
        if self.local is not None:
            self.ingress.observers.append(self.local.reflex.take)
        self.pipeline = SummaryPipeline(
            self.ingress.queue, TumblingWindows(int(config.pipeline.window_s * 1000)),
            self.journal, self.metrics)
        self.pipeline.recover(recovery)
        self.uplink = Uplink(config.uplink, config.gateway.id, self.outbox, self.keystore,
                             self.metrics) if config.uplink.url else None
        self.access = CoapDtlsServer(_access_config(config), self.ingress)
        self.nodes.attach(self.access, self.uplink.wakeup.set if self.uplink else lambda: None)
        # Privacy gate on the outbox, revocation list, signed policy (gateway/policy/).
        self.security = SecurityService(config, self.database, self.outbox, self.keystore,
                                        self.metrics, self.access.policy)
        if self.local is not None:
            self.local.reflex.may_act = self.security.limiter.allow
        self.metrics.export_counts("tandem_gw_access_events",
                                   "Device-access events and refusals by cause",
                                   self.access.stats.snapshot)
        self.metrics.export_counts("tandem_gw_ingress_reports", "Reports at the pipeline entry",
                                   self.ingress.snapshot)
        self._stop = asyncio.Event()
        self._stop_ingress = asyncio.Event()
        self._ingress_task: asyncio.Task[None] | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._metrics_server: Any = None

    async def start(self) -> None:
        """Start every layer; returns once devices can connect."""
        self._ingress_task = asyncio.create_task(self.ingress.run(self._stop_ingress),
                                                 name="ingress")
        self._ingress_task.add_done_callback(_report_crash)
        self._spawn(self.pipeline.run(self._stop), "pipeline")
        for name, watcher in self.local.tasks(self._stop) if self.local else ():
            self._spawn(watcher, name)
        if self.uplink is not None:
            self._spawn(self.uplink.run(self._stop), "uplink")
        else:
            log.warning("no uplink.url configured: data stays in the outbox")
        self._spawn(self._watch_outbox(), "outbox-gauges")
        for name, watcher in self.security.tasks(self._stop):
            self._spawn(watcher, name)
        for name, watcher in self.nodes.tasks(self._stop):
            self._spawn(watcher, name)
        self._modbus_sink.bind(asyncio.get_running_loop())
        if self.modbus is not None:
            self.fieldbus.spawn(self.modbus.tasks)
        await self.access.start()
        if self.config.metrics.port:
            self._metrics_server, _ = start_http_server(
                self.config.metrics.port, self.config.metrics.host, registry=self.metrics.registry)

    @property
    def coap_port(self) -> int:
        """The UDP port devices connect to (useful when configured as 0)."""
        return self.access.port

    @property
    def metrics_port(self) -> int:
        """The bound Prometheus port, 0 when disabled."""
        return int(self._metrics_server.server_port) if self._metrics_server else 0

    async def stop(self) -> None:
        """Stop taking data, store what is in flight, close everything."""
        await self.access.stop()
        self.nodes.commands.close()  # no node will poll again: waiting commands fail now
        await self.fieldbus.stop_tasks()  # Modbus polls end while the ingress still takes them
        self._stop_ingress.set()  # commit what nodes are waiting on, then stop
        if self._ingress_task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._ingress_task
        self._stop.set()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self.local is not None:
            await self.local.close()
        await self.fieldbus.close(*([self.modbus.close] if self.modbus else []))
        if self.uplink is not None:
            await self.uplink.close()
        await self.security.close()
        await self.nodes.close()
        self.database.close()
        self.keystore.close()
        if self._metrics_server is not None:
            self._metrics_server.shutdown()
            self._metrics_server.server_close()

    async def _watch_outbox(self) -> None:
        while not self._stop.is_set():
            records, batches = await self.outbox.depth()
            self.metrics.outbox_records.set(records)
            self.metrics.outbox_batches.set(batches)
            self.metrics.outbox_degraded.set(1 if self.outbox.degraded else 0)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), 1.0)

    def _spawn(self, coro: Coroutine[Any, Any, None], name: str) -> None:
        task = asyncio.create_task(coro, name=name)
        task.add_done_callback(_report_crash)
        self._tasks.append(task)


def _report_crash(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.critical("gateway task %s crashed", task.get_name(), exc_info=task.exception())


def _access_config(config: GatewayConfig) -> AccessConfig:
    coap = config.coap
    return AccessConfig(
        host=coap.host, port=coap.port, cert_pem=config.identity.cert,
        key_pem=config.identity.key, ca_pem=config.identity.ca, max_peers=coap.max_peers,
        idle_timeout_s=coap.idle_timeout_s, handshake_timeout_s=coap.handshake_timeout_s,
        max_handshakes=coap.max_handshakes, new_source_rate=coap.new_source_rate,
        allowed_devices=frozenset(coap.allowed_devices) or None,
        insecure_plain_coap=coap.insecure_plain_coap,
        device_resources=tuple((g.device, g.paths) for g in coap.grant))
