"""Shared parts of the offload e2e tests: the running fleet's API and task specs."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import httpx

from tandem.tools.procs import Child
from tandem.tools.site import Site
from tandem.wire.clock import now_ms
from tandem.wire.resources import CLOUD, Privacy, TaskSpec, task_to_plain
from tests.waiting import eventually

SITE = "plant-a"
MINUTE = 60_000
GATEWAY_ENV = {"TANDEM_GW_STATUS_INTERVAL_S": "0.5", "TANDEM_GW_STATUS_SCORE_ROUNDS": "2",
               "TANDEM_GW_STATUS_SITE": SITE, "TANDEM_GW_TASKS_POLL_S": "0.3"}


@dataclass
class Fleet:
    """The running site: its cloud API client and each gateway's process."""

    site: Site
    cloud: httpx.Client
    gateways: dict[str, Child] = field(default_factory=dict)

    def submit(self, spec: TaskSpec, args: dict[str, Any]) -> dict[str, Any]:
        """Submit a task through the API; its first placement (202 expected)."""
        answer = self.cloud.post("/api/v1/tasks", json={"task": task_to_plain(spec),
                                                        "args": args})
        assert answer.status_code == 202, answer.text
        body: dict[str, Any] = answer.json()
        return body

    def task(self, task_id: str) -> dict[str, Any]:
        """The ledger's view of a task."""
        body: dict[str, Any] = self.cloud.get(f"/api/v1/tasks/{task_id}").json()
        return body

    def done(self, task_id: str, timeout: float = 300) -> dict[str, Any]:
        """Wait until the task finished; its view (it must have succeeded)."""
        finished = eventually(lambda: (t := self.task(task_id))["state"] in ("done", "failed")
                              and t, f"task {task_id} finished", timeout, poll_s=0.3)
        assert finished["state"] == "done", finished
        return finished

    def start_gateways(self, names: tuple[str, ...]) -> None:
        """Start the site's gateways (the first is the site's own) and wait for their status."""
        self.gateways[names[0]] = self.site.start_gateway(env=GATEWAY_ENV)
        for name in names[1:]:
            other = self.site.add_gateway(name)
            other.register_gateway()
            self.gateways[name] = other.start_gateway(env=GATEWAY_ENV)
        eventually(lambda: sorted(g["gateway"] for g in self.cloud.get(
            "/api/v1/fleet/status").json()["gateways"] if g["reachable"]) == sorted(names),
            f"gateways {', '.join(names)} reporting", 120)


def spec(task_id: str, kind: str, at: str, privacy: Privacy = Privacy.ANY,
         migratable: bool = True, compute: float = 2.0, minutes: int = 60) -> TaskSpec:
    """A task whose input is at `at` (a gateway of SITE, or the cloud)."""
    return TaskSpec(task_id, kind, now_ms() + minutes * MINUTE, compute, at,
                    "" if at == CLOUD else SITE, 2000, privacy, migratable)
