"""What the gateway offers nodes beyond readings: commands (GET /c) and raw snippets (POST /raw).

Built before the local control loop (its node_alarm action sends through
`commands`), attached to the access server once that exists, and, with a
cloud URL, answering the cloud's raw requests (gateway/nodes/rawrequests.py).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from tandem.gateway.access.commands import COMMANDS_PATH, CommandsResource
from tandem.gateway.access.raw import RawResource
from tandem.gateway.access.server import CoapDtlsServer
from tandem.gateway.cloudlink.client import CloudEndpoint
from tandem.gateway.config import GatewayConfig
from tandem.gateway.identity.keystore import GatewayKeyStore
from tandem.gateway.metrics import GatewayMetrics
from tandem.gateway.nodes.commands import NodeCommands
from tandem.gateway.nodes.rawcache import RawCache
from tandem.gateway.nodes.rawrequests import RawRequests
from tandem.gateway.store.database import GatewayDatabase
from tandem.gateway.store.outbox import Outbox
from tandem.gateway.supervisor import TaskFactory
from tandem.wire.raw import RAW_PATH


class NodeServices:
    """The command queues, the raw cache and the raw-request client of one gateway."""

    def __init__(self, config: GatewayConfig, database: GatewayDatabase, outbox: Outbox,
                 keystore: GatewayKeyStore, metrics: GatewayMetrics) -> None:
        self.config = config
        self.commands = NodeCommands(config.commands, metrics.registry)
        self.cache = RawCache(database, config.rawcache, metrics.registry)
        self.requests: RawRequests | None = None
        self._database = database
        self._outbox = outbox
        self._keystore = keystore

    def attach(self, access: CoapDtlsServer, wake_uplink: Callable[[], None]) -> None:
        """Serve /c and /raw on access; answer the cloud's raw requests when it has a URL."""
        access.resources[(COMMANDS_PATH,)] = CommandsResource(self.commands, access.policy,
                                                               access.stats)
        access.resources[(RAW_PATH,)] = RawResource(
            self.cache, access.policy, access.stats, self.config.rawcache.per_device_per_min)
        url = self.config.uplink.url
        if url:
            http = CloudEndpoint.of(self.config, url).async_client()
            self.requests = RawRequests(self.config.gateway.id, self.cache, self.commands,
                                        self._outbox, self._keystore, http, self._database.call,
                                        self.config.rawcache, wake_uplink)

    def tasks(self, stop: asyncio.Event) -> list[tuple[str, TaskFactory]]:
        """The raw cache's purge and the raw-request poll."""
        requests = self.requests
        found: list[tuple[str, TaskFactory]] = [("rawcache-purge", lambda: self.cache.run(stop))]
        if requests is not None:
            found.append(("raw-requests", lambda: requests.run(stop)))
        return found

    async def close(self) -> None:
        """Fail commands still waiting, close the cloud client (after the tasks ended)."""
        self.commands.close()
        if self.requests is not None:
            await self.requests.close()

