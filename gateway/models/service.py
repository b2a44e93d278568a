"""Builds the gateway's model agent from its config, enrolment and local control's model slot."""

from __future__ import annotations

import asyncio
import logging

from tandem.gateway.cloudlink.client import CloudEndpoint
from tandem.gateway.config import GatewayConfig
from tandem.gateway.identity import enrolled
from tandem.gateway.identity.keystore import GatewayKeyStore
from tandem.gateway.inference.slot import ModelSlot
from tandem.gateway.metrics import GatewayMetrics
from tandem.gateway.models.agent import ModelAgent, Offload
from tandem.gateway.models.transfer import TokenBucket, TransferMetrics
from tandem.gateway.supervisor import TaskFactory

log = logging.getLogger(__name__)
MODELS_DIR = "models"


def build_agent(config: GatewayConfig, slot: ModelSlot | None, keystore: GatewayKeyStore,
                offload: Offload, metrics: GatewayMetrics) -> ModelAgent | None:
    """The model agent, or None (disabled, no inference slot, not enrolled, no cloud URL)."""
    section, data_dir = config.models, config.gateway.data_dir
    url = config.policy.url or config.uplink.url
    trust = config.policy.trust_key or enrolled.enrolment_dir(data_dir) / enrolled.POLICY_KEY
    if not section.enabled or slot is None or not url or not trust.exists():
        if section.enabled and slot is not None:
            log.warning("no model releases: needs enrolment and a cloud URL")
        return None
    return ModelAgent(config.gateway.id, enrolled.public_key(trust), data_dir / MODELS_DIR, slot,
                      keystore, CloudEndpoint.of(config, url).async_client(), offload,
                      TransferMetrics(metrics.registry),
                      TokenBucket(section.rate_bytes_s, section.burst_bytes), section.poll_s)


def tasks(agent: ModelAgent | None, stop: asyncio.Event) -> list[tuple[str, TaskFactory]]:
    """The agent's task: restore the saved model, then poll."""
    if agent is None:
        return []

    async def run() -> None:
        await agent.restore()
        await agent.run(stop)

    return [("model-agent", run)]
