"""The gateway's HTTP status port: Prometheus `/metrics`, `/health/live`, `/health/ready`.

Served by aiohttp on the event loop (no extra thread). Live is false only
when a task ran out of restarts (restart the process); ready is false while
any task is down, so a load balancer or an operator sees a degraded gateway.
Both answer JSON with each task's state; 200 when true, 503 when false.
"""

from __future__ import annotations

from collections.abc import Callable

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from tandem.gateway.supervisor import Supervisor


class HealthServer:
    """Serves metrics and health on host:port; start() binds, stop() releases."""

    def __init__(self, registry: CollectorRegistry, supervisor: Supervisor,
                 extra_ready: Callable[[], dict[str, bool]] = dict) -> None:
        self._registry = registry
        self._supervisor = supervisor
        self._extra_ready = extra_ready
        self._runner: web.AppRunner | None = None
        self.port = 0

    async def start(self, host: str, port: int) -> None:
        """Bind and serve; port 0 picks a free one (see .port)."""
        app = web.Application()
        app.add_routes([web.get("/metrics", self._metrics),
                        web.get("/health/live", self._live),
                        web.get("/health/ready", self._ready)])
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port)
        await site.start()
        self.port = int(self._runner.addresses[0][1])

    async def stop(self) -> None:
        """Close the listening socket and open connections; safe to call twice."""
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()

    async def _metrics(self, request: web.Request) -> web.Response:
        return web.Response(body=generate_latest(self._registry),
                            headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def _live(self, request: web.Request) -> web.Response:
        return self._answer(self._supervisor.live, {})

    async def _ready(self, request: web.Request) -> web.Response:
        checks = self._extra_ready()
        return self._answer(self._supervisor.ready and all(checks.values()), checks)

    def _answer(self, ok: bool, checks: dict[str, bool]) -> web.Response:
        tasks = {name: s.as_json() for name, s in self._supervisor.status().items()}
        return web.json_response({"ok": ok, "tasks": tasks, "checks": checks},
                                 status=200 if ok else 503)
