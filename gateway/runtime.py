"""Wires the gateway's layers together: access -> pipeline -> outbox -> uplink.

`Gateway.start()` brings the layers up from the outbox outwards (so nothing is
accepted before it can be stored), `stop()` takes them down from the edge
inwards and stores every open window before the outbox closes.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging

from tandem.gateway.access.config import AccessConfig
from tandem.gateway.access.server import CoapDtlsServer
from tandem.gateway.actuator import ActuatorPort, PortFactory
from tandem.gateway.cloudlink.client import CloudEndpoint
from tandem.gateway.cloudlink.livelane import LiveLane
from tandem.gateway.cloudlink.statusreport import StatusReporter
from tandem.gateway.cloudlink.uplink import Uplink
from tandem.gateway.config import GatewayConfig
from tandem.gateway.health import HealthServer
from tandem.gateway.identity import enrolled
from tandem.gateway.identity.keystore import GatewayKeyStore
from tandem.gateway.identity.kinds import open_keystore
from tandem.gateway.installer.server import InstallerServer
from tandem.gateway.metrics import GatewayMetrics
from tandem.gateway.modbus import busfile
from tandem.gateway.modbus.actuatorclient import (
    ActuatorProcess,
    ActuatorProcessMetrics,
    process_ports,
)
from tandem.gateway.modbus.config import ModbusSection
from tandem.gateway.modbus.fieldbus import CrossLoopSink, FieldbusThread
from tandem.gateway.modbus.service import ModbusService
from tandem.gateway.models import service as model_service
from tandem.gateway.nodes.services import NodeServices
from tandem.gateway.pipeline.ingress import Ingress
from tandem.gateway.pipeline.journal import Journal
from tandem.gateway.pipeline.livevalues import LiveValues
from tandem.gateway.pipeline.quarantine import QuarantineLog
from tandem.gateway.pipeline.summarise import SummaryPipeline
from tandem.gateway.pipeline.windows import TumblingWindows
from tandem.gateway.policy.service import SecurityService
from tandem.gateway.rules.actions import ActuatorPorts
from tandem.gateway.rules.local_control import LocalControl
from tandem.gateway.store.database import DATABASE_FILE, GatewayDatabase
from tandem.gateway.store.outbox import Outbox
from tandem.gateway.supervisor import (
    RestartPolicy,
    Supervisor,
    SupervisorMetrics,
    TaskFactory,
    periodic,
)
from tandem.gateway.tasks.agent import TaskAgent

log = logging.getLogger(__name__)


class Gateway:
    """One running gateway instance."""

    def __init__(self, config: GatewayConfig, keystore: GatewayKeyStore | None = None) -> None:
        config = self.config = with_enrolled_cloud(config)
        self.metrics = GatewayMetrics()
        self.keystore = keystore or open_keystore(config.identity, config.gateway.data_dir)
        self.database = GatewayDatabase(config.gateway.data_dir / DATABASE_FILE)
        self.outbox = Outbox(self.database, config.outbox.max_records)
        self.journal = Journal(self.database, self.outbox, QuarantineLog(self.metrics.quarantined))
        recovery = self.journal.recover()
        self.ingress = Ingress(self.journal, config.pipeline.max_pending, recovery.last)
        # Modbus (polls and emergency stops) runs on its own thread and loop.
        self.fieldbus = FieldbusThread()
        self._modbus_sink = CrossLoopSink(self.ingress)
        # Every emergency stop writes through a bus coordinator, configured bus or not.
        # gateway.toml's buses plus those added on the installer page (gateway/modbus/busfile.py).
        section = busfile.effective(config.modbus, config.gateway.data_dir)
        actuators = ModbusService(section, self._modbus_sink, self.metrics.registry)
        self.modbus = actuators if section.bus else None
        self._modbus_metrics = actuators.metrics
        # [modbus] actuator = "process": stops to TCP controllers go to the actuator process
        # (gateway/modbus/actuatorproc.py), a supervised task of its own.
        self.actuator_process = ActuatorProcess(ActuatorProcessMetrics(self.metrics.registry),
                                                section.actuator_priority) \
            if section.actuator == "process" else None
        ports = self.ports = ActuatorPorts(*self._stop_ports(actuators))
        # Node commands (GET /c), raw snippets (POST /raw), the cloud's raw requests.
        self.nodes = NodeServices(config, self.database, self.outbox, self.keystore, self.metrics)
        self.local = LocalControl.from_config(config, self.outbox, self.metrics, ports=ports,
                                              offload=self.fieldbus.run,
                                              commander=self.nodes.commands)
        if self.local is not None:
            self.ingress.observers.append(self.local.reflex.take)
        # Each node's newest values and recent history, fed after the reflex: the installer
        # page's status, charts and rules dry run (gateway/pipeline/livevalues.py).
        self.live = LiveValues()
        self.ingress.observers.append(self.live.take)
        self.pipeline = SummaryPipeline(
            self.ingress.queue, TumblingWindows(int(config.pipeline.window_s * 1000)),
            self.journal, self.metrics)
        self.pipeline.recover(recovery)
        self.uplink = Uplink(config.uplink, CloudEndpoint.of(config), config.gateway.id,
                             self.outbox, self.keystore, self.metrics) \
            if config.uplink.url else None
        # Status for the cloud's scheduler (load, queue, outbox, link) every [status] interval_s.
        self.status = StatusReporter(config.gateway.id, config.status, config.gateway.data_dir,
                                     self.outbox, CloudEndpoint.of(config), self.keystore,
                                     self.database.call, self.metrics.registry) \
            if config.uplink.url else None
        # The newest values of devices the cloud watches, every [live] interval_s; lossy, off
        # the record path (it reads the board above, never the outbox).
        self.live_lane = LiveLane(config.gateway.id, self.live, config.live,
                                  CloudEndpoint.of(config), self.keystore, self.database.call,
                                  self.metrics.registry) \
            if config.uplink.url and config.live.enabled else None
        # Tasks the cloud's scheduler places here, run by idle-priority workers (gateway/tasks/).
        self.tasks = TaskAgent.of(config.gateway.id, config.tasks, CloudEndpoint.of(config),
                                  self.keystore, self.database.call, self.metrics.registry) \
            if config.uplink.url and config.tasks.enabled else None
        if self.status is not None and self.tasks is not None:
            self.status.queue, self.status.cores = self.tasks.figures, config.tasks.workers
        if self.uplink is not None:  # alarms and events leave at once (the urgent lane)
            self.outbox.on_urgent.append(self.uplink.urgent.set)
        self.access = CoapDtlsServer(_access_config(config), self.ingress)
        self.nodes.attach(self.access, self.uplink.wakeup.set if self.uplink else lambda: None)
        # Privacy gate on the outbox, revocation list, signed policy (gateway/policy/).
        self.security = SecurityService(config, self.database, self.outbox, self.keystore,
                                        self.metrics, self.access.policy)
        if self.local is not None:
            self.local.reflex.may_act = self.security.limiter.allow
        # Model releases into local control's slot (gateway/models/).
        self.models = model_service.build_agent(
            config, self.local.model if self.local else None, self.keystore,
            self.database.call, self.metrics)
        self.metrics.export_counts("tandem_gw_access_events",
                                   "Device-access events and refusals by cause",
                                   self.access.stats.snapshot)
        self.metrics.export_counts("tandem_gw_ingress_reports", "Reports at the pipeline entry",
                                   self.ingress.snapshot)
        self._stop = asyncio.Event()
        self._stop_ingress = asyncio.Event()
        self._supervisor: Supervisor | None = None
        self.health: HealthServer | None = None
        self.installer: InstallerServer | None = None

    @property
    def supervisor(self) -> Supervisor:
        """The supervisor of the gateway's tasks (exists once start() ran)."""
        if self._supervisor is None:
            raise RuntimeError("gateway not started")
        return self._supervisor

    async def start(self) -> None:
        """Start every layer; returns once devices can connect."""
        s = self.config.supervisor
        supervisor = self._supervisor = Supervisor(
            SupervisorMetrics(self.metrics.registry),
            RestartPolicy(s.backoff_s, s.backoff_max_s, s.restart_budget, s.budget_window_s))
        # Every task is a factory: a restart runs a fresh coroutine on the same objects.
        supervisor.spawn("ingress", lambda: self.ingress.run(self._stop_ingress))
        supervisor.spawn("pipeline", lambda: self.pipeline.run(self._stop))
        self.ingress.accepting = lambda: supervisor.is_running("ingress", "pipeline")
        for name, factory in self._task_factories():
            supervisor.spawn(name, factory)
        if self.uplink is None:
            log.warning("no uplink.url configured: data stays in the outbox")
        self._modbus_sink.bind(asyncio.get_running_loop())
        if self.modbus is not None:
            self.fieldbus.spawn(self.modbus.tasks)
        await self.access.start()
        if self.config.metrics.port:
            self.health = HealthServer(self.metrics.registry, supervisor)
            await self.health.start(self.config.metrics.host, self.config.metrics.port)
        if self.config.installer.enabled:
            await self._start_installer()

    async def _start_installer(self) -> None:
        """The installer page; a port it cannot bind is a WARNING, not a gateway down."""
        installer = InstallerServer(self.config.installer, self, self.live)
        try:
            await installer.start()
        except OSError as exc:
            log.warning("installer page not served on %s:%d: %s", self.config.installer.host,
                        self.config.installer.port, exc)
            await installer.stop()
            return
        self.installer = installer
        log.info("installer page on https://%s:%d/", self.config.installer.host, installer.port)

    async def reload_modbus(self, section: ModbusSection) -> None:
        """Poll `section`'s buses from now on, in-process (the installer page's apply).

        Maps are loaded (in a thread) before anything stops, so a bad one changes
        nothing; then the old polls stop, their connections close, and emergency
        stops move to the new coordinators before the new polls start.
        """
        service = await asyncio.to_thread(ModbusService, section, self._modbus_sink,
                                          metrics=self._modbus_metrics)
        old, self.modbus = self.modbus, service if section.bus else None
        await self.fieldbus.stop_tasks()
        if old is not None:
            await self.fieldbus.run(old.close())
        self.ports.rebind(*self._stop_ports(service))
        if self.local is not None:  # built actions hold their port: rebuild them on the new buses
            self.local.reflex.install(self.local.reflex.ruleset)
        await self.fieldbus.respawn(service.tasks)
        log.info("modbus reloaded: %d bus(es), %d unit(s)", len(section.bus),
                 sum(len(b.units) for b in section.bus))

    def _stop_ports(self, service: ModbusService) -> tuple[PortFactory, dict[str, ActuatorPort]]:
        """Where emergency stops write: the actuator process, or the buses' coordinators."""
        if self.actuator_process is not None:
            return process_ports(self.actuator_process, service)
        return service.actuator_factory(), dict(service.coordinators)

    def _task_factories(self) -> list[tuple[str, TaskFactory]]:
        stop, uplink = self._stop, self.uplink
        factories: list[tuple[str, TaskFactory]] = [("outbox-gauges", self._watch_outbox)]
        process = self.actuator_process
        if process is not None and self.local is not None:  # no rules: no stops to write
            factories.append(("actuator-process", lambda: process.run(stop)))
        if uplink is not None:
            factories.append(("uplink", lambda: uplink.run(stop)))
        status = self.status
        if status is not None:
            factories.append(("status-report", lambda: status.run(stop)))
        lane = self.live_lane
        if lane is not None:
            factories.append(("live-lane", lambda: lane.run(stop)))
        tasks = self.tasks
        if tasks is not None:
            factories.append(("tasks", lambda: tasks.run(stop)))
        if self.local is not None:
            factories += self.local.tasks(stop)
        return factories + self.security.tasks(stop) + self.nodes.tasks(stop) \
            + model_service.tasks(self.models, stop)

    async def connect_cloud(self, url: str) -> list[str]:
        """After an enrolment on the installer page: upload to url from now on, in-process.

        The identity key is the key store's, already open, so starting the cloud
        tasks is all the new identity needs. Returns what started; a gateway
        already uploading elsewhere keeps its link until the service restarts.
        """
        if self.uplink is not None:
            same = self.config.uplink.url.rstrip("/") == url.rstrip("/")
            return [] if same else [f"restart the service to upload to {url}"]
        config = self.config = dataclasses.replace(
            self.config, uplink=dataclasses.replace(self.config.uplink, url=url))
        uplink = self.uplink = Uplink(config.uplink, CloudEndpoint.of(config), config.gateway.id,
                                      self.outbox, self.keystore, self.metrics)
        self.outbox.on_urgent.append(uplink.urgent.set)
        status = self.status = StatusReporter(
            config.gateway.id, config.status, config.gateway.data_dir, self.outbox,
            CloudEndpoint.of(config), self.keystore, self.database.call, self.metrics.registry)
        stop = self._stop
        started: list[tuple[str, TaskFactory]] = [
            ("uplink", lambda: uplink.run(stop)), ("status-report", lambda: status.run(stop))]
        started += await self.security.start_agent(config, self.database, self.keystore, stop)
        for name, factory in started:
            self.supervisor.spawn(name, factory)
        log.info("cloud link to %s started: %s", url, ", ".join(n for n, _ in started))
        return [name for name, _ in started]

    @property
    def coap_port(self) -> int:
        """The UDP port devices connect to (useful when configured as 0)."""
        return self.access.port

    @property
    def metrics_port(self) -> int:
        """The bound metrics and health port, 0 when disabled."""
        return self.health.port if self.health else 0

    async def stop(self) -> None:
        """Stop taking data, store what is in flight, close everything."""
        supervisor = self._supervisor
        if supervisor is not None:  # a task down now stays down; the journal keeps its data
            supervisor.stop_restarts()
        if self.installer is not None:  # no change from the page while layers go down
            await self.installer.stop()
        await self.access.stop()
        self.nodes.commands.close()  # no node will poll again: waiting commands fail now
        await self.fieldbus.stop_tasks()  # Modbus polls end while the ingress still takes them
        self._stop_ingress.set()  # commit what nodes are waiting on, then stop
        if supervisor is not None:
            await supervisor.join("ingress")
        self._stop.set()
        if supervisor is not None:
            await supervisor.join()
        if self.local is not None:
            await self.local.close()
        await self.fieldbus.close(*([self.modbus.close] if self.modbus else []))
        if self.uplink is not None:
            await self.uplink.close()
        if self.status is not None:
            await self.status.close()
        if self.live_lane is not None:
            await self.live_lane.close()
        if self.tasks is not None:
            await self.tasks.close()
        await self.security.close()
        if self.models is not None:
            await self.models.close()
        await self.nodes.close()
        self.database.close()
        self.keystore.close()
        if self.health is not None:
            await self.health.stop()

    async def _watch_outbox(self) -> None:
        await periodic(self._stop, 1.0, self._outbox_gauges)

    async def _outbox_gauges(self) -> None:
        records, batches = await self.outbox.depth()
        self.metrics.outbox_records.set(records)
        self.metrics.outbox_batches.set(batches)
        # Degraded also while a task is down: the gateway is not moving data as it should.
        degraded = self.outbox.degraded or not self.supervisor.ready
        self.metrics.outbox_degraded.set(1 if degraded else 0)


def with_enrolled_cloud(config: GatewayConfig) -> GatewayConfig:
    """No uplink.url configured but enrolled (on the installer page): the enrolment's cloud."""
    if config.uplink.url:
        return config
    try:
        enrolment = enrolled.load(config.gateway.data_dir)
    except enrolled.EnrolmentFilesError as exc:
        log.warning("enrolment files unreadable, no cloud link: %s", exc)
        return config
    if enrolment is None:
        return config
    return dataclasses.replace(config, uplink=dataclasses.replace(config.uplink,
                                                                  url=enrolment.cloud))


def _access_config(config: GatewayConfig) -> AccessConfig:
    identity = config.identity
    return AccessConfig.of(config.coap, cert_pem=identity.cert, key_pem=identity.key,
                           ca_pem=identity.ca)
