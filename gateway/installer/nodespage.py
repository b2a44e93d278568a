"""The nodes screen: allow or revoke a node, and download a node's provisioning bundle.

A revocation is written to the local revocation list (gateway/policy/
revocation.py) and applied at once: the device's open DTLS sessions are
closed and its next handshake is refused. "Allow" takes it off that list (a
revocation by the signed cloud policy or the configuration stays in force,
and the screen says so). Server-rendered forms; every change is audited.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from html import escape
from pathlib import Path

from aiohttp import web

from tandem.gateway.installer import pages
from tandem.gateway.installer.audit import AuditTrail
from tandem.gateway.installer.nodebundle import BundleRequest, make_bundle, provision_command
from tandem.gateway.installer.sessions import Session
from tandem.gateway.pipeline.livevalues import LiveValues
from tandem.gateway.policy.revocation import RevocationList
from tandem.wire.certprofile import ProfileError, check_name

ONLINE_MS = 60_000
SessionOf = web.RequestKey[Session]


@dataclass(frozen=True)
class NodeAccess:
    """What the screen acts on: the revocation list, the DTLS server, the node's trust."""

    revocations: RevocationList
    permits: Callable[[str], bool]  # the device policy's verdict, every source combined
    drop_sessions: Callable[[str], int]  # close a device's open DTLS sessions
    gateway_id: str
    coap_host: str
    coap_port: Callable[[], int]
    site_ca: Path


class NodesPage:
    """GET /nodes, POST /nodes/revoke and /nodes/allow, GET /nodes/bundle?name=."""

    def __init__(self, access: Callable[[], NodeAccess], live: LiveValues, audit: AuditTrail,
                 session_key: SessionOf) -> None:
        self._access = access
        self.live = live
        self.audit = audit
        self._session = session_key

    @property
    def access(self) -> NodeAccess:
        """The gateway's parts this screen acts on."""
        return self._access()

    def routes(self) -> list[web.RouteDef]:
        """The routes to add to the installer app."""
        return [web.get("/nodes", self._page), web.post("/nodes/revoke", self._revoke),
                web.post("/nodes/allow", self._allow), web.get("/nodes/bundle", self._bundle)]

    async def _page(self, request: web.Request) -> web.Response:
        return await self._render(request, "")

    async def _revoke(self, request: web.Request) -> web.Response:
        device = await _device(request)
        if device is None:
            return await self._render(request, "Not a node name.", 422)
        await asyncio.to_thread(self.access.revocations.revoke, device)
        closed = self.access.drop_sessions(device)
        self.audit.record("node-revoked", request[self._session].user, request.remote or "?",
                          device=device, sessions_closed=closed)
        return await self._render(request, f"{device} revoked: its connections are refused "
                                  "from now on.")

    async def _allow(self, request: web.Request) -> web.Response:
        device = await _device(request)
        if device is None:
            return await self._render(request, "Not a node name.", 422)
        await asyncio.to_thread(self.access.revocations.allow, device)
        self.audit.record("node-allowed", request[self._session].user, request.remote or "?",
                          device=device)
        if not self.access.permits(device):
            return await self._render(request, f"{device} is off the local revocation list, but "
                                      "the cloud's policy or the configuration still refuses "
                                      "it.")
        return await self._render(request, f"{device} allowed: it may connect again.")

    async def _bundle(self, request: web.Request) -> web.Response:
        name = request.query.get("name", "").strip()
        host = self.access.coap_host
        if host in ("", "0.0.0.0", "::"):  # the address the installer reached us at
            host = (request.host or "").rsplit(":", 1)[0].strip("[]") or host
        wanted = BundleRequest(name, host, self.access.coap_port(), self.access.gateway_id)
        try:
            data = await asyncio.to_thread(make_bundle, wanted, self.access.site_ca)
        except ProfileError as exc:
            return await self._render(request, f"No bundle: {exc}", 422)
        self.audit.record("node-bundle", request[self._session].user, request.remote or "?",
                          device=name)
        return web.Response(body=data, content_type="application/zip", headers={
            "Content-Disposition": f'attachment; filename="{name}-bundle.zip"',
            "Cache-Control": "no-store"})

    async def _render(self, request: web.Request, message: str,
                      status: int = 200) -> web.Response:
        listed = await asyncio.to_thread(self.access.revocations.names)
        session = request[self._session]
        rows = "".join(self._row(session, d, d in listed) for d in self._devices(listed))
        result = f'<p id="nodes-result" class="{"error" if status >= 400 else "ok"}">' \
                 f"{escape(message)}</p>" if message else ""
        example = provision_command(BundleRequest("NAME", self.access.coap_host,
                                                  self.access.coap_port(),
                                                  self.access.gateway_id))
        body = f"""<main class="nodes"><section><h2>Nodes</h2>{result}
<table><thead><tr><th>Node</th><th>State</th><th>Last seen</th><th>Access</th><th></th></tr>
</thead><tbody id="nodes-table">{rows}</tbody></table>
<form method="post" action="/nodes/revoke" id="revoke-form">
<input type="hidden" name="csrf" value="{escape(session.csrf)}">
<label>Revoke a node by name <input name="device" id="revoke-name" required></label>
<button type="submit" id="revoke-by-name">Revoke</button></form></section>
<section><h2>Provisioning bundle</h2>
<form method="get" action="/nodes/bundle" id="bundle-form">
<label>Node name <input name="name" id="bundle-name" required></label>
<button type="submit" id="bundle">Download bundle</button></form>
<p>The bundle holds node.json for this gateway and the site CA. The node's certificate is
issued where the site CA key lives, with <code>{escape(" ".join(example))}</code>.</p>
</section></main>"""
        return pages.screen(session, "Nodes", "Nodes", body, status)

    def _devices(self, listed: frozenset[str]) -> list[str]:
        return sorted(set(self.live.nodes) | listed)

    def _row(self, session: Session, device: str, listed: bool) -> str:
        track = self.live.nodes.get(device)
        now = self.live.clock()
        seen = "never" if track is None else time.strftime(
            "%H:%M:%S", time.localtime(track.last_seen_ms / 1000))
        online = track is not None and now - track.last_seen_ms < ONLINE_MS
        allowed = self.access.permits(device)
        access = "allowed" if allowed else "revoked here" if listed else "refused by policy"
        action, label = ("allow", "Allow") if listed else ("revoke", "Revoke")
        return (f'<tr data-device="{escape(device)}"><td>{escape(device)}</td>'
                f'<td>{"online" if online else "offline"}</td><td>{seen}</td>'
                f'<td class="{"ok" if allowed else "bad"}">{access}</td><td>'
                f'<form method="post" action="/nodes/{action}">'
                f'<input type="hidden" name="csrf" value="{escape(session.csrf)}">'
                f'<input type="hidden" name="device" value="{escape(device)}">'
                f'<button type="submit" id="{action}-{escape(device)}">{label}</button>'
                f"</form></td></tr>")


async def _device(request: web.Request) -> str | None:
    device = str((await request.post()).get("device", "")).strip()
    try:
        check_name(device)
    except ProfileError:
        return None
    return device
