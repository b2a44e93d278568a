"""Wires security into the gateway: privacy gate on the outbox, revocation list, policy agent."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import httpx
from cryptography.hazmat.primitives.asymmetric import ec

from tandem.gateway.access.device_policy import DevicePolicy
from tandem.gateway.cloudlink.client import CloudEndpoint
from tandem.gateway.config import GatewayConfig
from tandem.gateway.identity import enrolled
from tandem.gateway.identity.keystore import GatewayKeyStore
from tandem.gateway.metrics import GatewayMetrics
from tandem.gateway.policy.agent import PolicyAgent
from tandem.gateway.policy.enforce import Enforcer
from tandem.gateway.policy.limits import ActionLimiter
from tandem.gateway.policy.revocation import RevocationList
from tandem.gateway.privacy.gate import PrivacyGate
from tandem.gateway.store.database import GatewayDatabase
from tandem.gateway.store.outbox import Outbox
from tandem.gateway.supervisor import TaskFactory

log = logging.getLogger(__name__)

POLICY_DIR = "policy"
REVOCATION_FILE = "revoked-devices.txt"


class SecurityService:
    """Everything the signed policy and the revocation list act on, and the tasks keeping them."""

    def __init__(self, config: GatewayConfig, database: GatewayDatabase, outbox: Outbox,
                 keystore: GatewayKeyStore, metrics: GatewayMetrics,
                 devices: DevicePolicy, http: httpx.AsyncClient | None = None) -> None:
        data_dir = config.gateway.data_dir
        self.gate = PrivacyGate(database, metrics.registry)
        outbox.admission = self.gate
        self.limiter = ActionLimiter()
        self.enforcer = Enforcer(self.gate, devices, self.limiter, keystore,
                                 _key(config.policy.data_key, data_dir, enrolled.DATA_KEY),
                                 metrics.set_device_label)
        # Unconfigured, the list lives in the data directory (the installer page edits it).
        self.revocations = RevocationList(
            config.coap.revocation_file or data_dir / REVOCATION_FILE, devices)
        self.agent = self._agent(config, database, keystore, http)
        if self.agent is not None:
            database.call_sync(self.agent.restore)

    def _agent(self, config: GatewayConfig, database: GatewayDatabase,
               keystore: GatewayKeyStore, http: httpx.AsyncClient | None) -> PolicyAgent | None:
        data_dir = config.gateway.data_dir
        url = config.policy.url or config.uplink.url
        trusted = _key(config.policy.trust_key, data_dir, enrolled.POLICY_KEY)
        enrolment = enrolled.load(data_dir)
        if not url or trusted is None or enrolment is None:
            log.warning("no security policy: needs enrolment (tandem-gateway enrol) "
                        "and a cloud URL")
            return None
        http = http or CloudEndpoint.of(config, url).async_client()
        return PolicyAgent(config.gateway.id, enrolment.group, trusted, data_dir / POLICY_DIR,
                           self.enforcer.install, keystore, http, database.call,
                           config.policy.poll_s)

    async def start_agent(self, config: GatewayConfig, database: GatewayDatabase,
                          keystore: GatewayKeyStore,
                          stop: asyncio.Event) -> list[tuple[str, TaskFactory]]:
        """After an in-process enrolment: the policy agent (restored) as a task to spawn, if new."""
        if self.agent is not None:
            return []
        if self.enforcer.recipient is None:  # the data key enrolment just saved
            self.enforcer.recipient = _key(config.policy.data_key, config.gateway.data_dir,
                                           enrolled.DATA_KEY)
        agent = self.agent = self._agent(config, database, keystore, None)
        if agent is None:
            return []
        await database.call(agent.restore)
        return [("policy-agent", lambda: agent.run(stop))]

    def tasks(self, stop: asyncio.Event) -> list[tuple[str, TaskFactory]]:
        """The watcher tasks to run, as factories (the supervisor may run one again)."""
        found: list[tuple[str, TaskFactory]] = []
        revocations, agent = self.revocations, self.agent
        if revocations is not None:
            found.append(("revocation-list", lambda: revocations.run(stop)))
        if agent is not None:
            found.append(("policy-agent", lambda: agent.run(stop)))
        return found

    async def close(self) -> None:
        """Close the policy client."""
        if self.agent is not None:
            await self.agent.close()


def _key(configured: Path | None, data_dir: Path, name: str) -> ec.EllipticCurvePublicKey | None:
    path = configured or enrolled.enrolment_dir(data_dir) / name
    if configured is None and not path.exists():
        return None
    return enrolled.public_key(path)

