"""The installer page's HTTPS server: aiohttp on the daemon's event loop.

Every request carries a session cookie (Secure, HttpOnly, SameSite=Strict);
every POST must carry the session's CSRF token (form field `csrf` or header
X-CSRF-Token) or is refused with 403; every page but /login needs a login.
Logins are throttled per client address. Handlers only read in-memory state
or hand file work to a thread, so the reflex path never waits for the page.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
from aiohttp import web

from tandem.gateway.cloudlink.client import CloudEndpoint
from tandem.gateway.identity.keystore import GatewayKeyStore
from tandem.gateway.identity.onthread import KeyStoreOnThread
from tandem.gateway.installer import pages
from tandem.gateway.installer.audit import AuditTrail
from tandem.gateway.installer.auditlink import AuditLink
from tandem.gateway.installer.config import InstallerSection
from tandem.gateway.installer.enrolpage import EnrolPage
from tandem.gateway.installer.modbuspage import ModbusPage
from tandem.gateway.installer.nodespage import NodeAccess, NodesPage
from tandem.gateway.installer.pagecert import PageCert, page_cert, upgrade
from tandem.gateway.installer.password import Credentials
from tandem.gateway.installer.rulespage import RulesPage
from tandem.gateway.installer.sessions import COOKIE, Session, SessionTable
from tandem.gateway.installer.status import StatusSource
from tandem.gateway.installer.throttle import LoginThrottle
from tandem.gateway.pipeline.livevalues import LiveValues

if TYPE_CHECKING:
    from tandem.gateway.runtime import Gateway

log = logging.getLogger(__name__)

STATIC = Path(__file__).parent / "static"
PUBLIC = ("/login", "/static/")
LIVE_WINDOW_MS = 5 * 60_000
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
SESSION_KEY: web.RequestKey[Session] = web.RequestKey("session", Session)


class InstallerServer:
    """Serves the installer page for one gateway; start() binds, stop() releases."""

    def __init__(self, section: InstallerSection, gateway: Gateway, live: LiveValues) -> None:
        self.section = section
        self.gateway = gateway
        self.live = live
        self.status = StatusSource(gateway, live)
        self.sessions = SessionTable(section.session_s)
        self.throttle = LoginThrottle(section.free_attempts, section.max_lockout_s)
        self.credentials = Credentials(gateway.config.gateway.data_dir)
        self.audit = AuditTrail()
        self._runner: web.AppRunner | None = None
        self.cert: PageCert | None = None
        self.port = 0
        self.audit_link: AuditLink | None = None
        self._stop = asyncio.Event()
        self._sender: asyncio.Task[None] | None = None
        # Both read the gateway when asked (it may be a stand-in with less in unit tests).
        self.enrol_page = EnrolPage(lambda: self.gateway.config, self._keystore, self.audit,
                                    SESSION_KEY, self._connect_cloud, lambda: self.cert)
        self.nodes_page = NodesPage(lambda: _node_access(self.gateway), live, self.audit,
                                    SESSION_KEY)
        self._status_body: tuple[dict[str, Any], bytes] | None = None

    def app(self) -> web.Application:
        """The aiohttp application (tests drive it with aiohttp's test client)."""
        app = web.Application(middlewares=[self._sessions_mw], client_max_size=1 << 20)
        app.add_routes([web.get("/", self._status_page), web.get("/login", self._login_page),
                        web.post("/login", self._login), web.post("/logout", self._logout),
                        web.get("/api/status", self._status_json),
                        web.get("/api/live", self._live_json),
                        web.static("/static", STATIC)])
        app.add_routes(RulesPage(self.gateway.config.rules.file, self.live, self.audit,
                                 SESSION_KEY).routes())
        app.add_routes(self.enrol_page.routes() + self.nodes_page.routes())
        app.add_routes(ModbusPage(self.gateway, self.audit, SESSION_KEY).routes())
        return app

    async def start(self) -> None:
        """Announce the login (one-time code if no password), bind HTTPS."""
        config = self.gateway.config
        self.cert = await asyncio.to_thread(page_cert, config.identity, config.gateway.data_dir,
                                            config.gateway.id)
        self.credentials.announce()
        self._runner = web.AppRunner(self.app(), access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, self.section.host, self.section.port,
                          ssl_context=self.cert.tls).start()
        self.port = int(self._runner.addresses[0][1])
        self._start_audit_link()

    def _start_audit_link(self) -> None:
        """With a cloud configured, changes go to its audit log too."""
        gw = self.gateway
        if not gw.config.uplink.url:
            return
        http = CloudEndpoint.of(gw.config).async_client()
        self.audit_link = AuditLink(gw.config.gateway.id, self.audit, gw.keystore, http,
                                    gw.database.call)
        self._sender = asyncio.create_task(self.audit_link.run(self._stop))

    def _keystore(self) -> GatewayKeyStore:
        """The daemon's key store, used on its database thread as the daemon does."""
        return KeyStoreOnThread(self.gateway.keystore, self.gateway.database.call_sync)

    async def _connect_cloud(self, url: str) -> list[str]:
        """Enrolled on the page: the gateway starts its cloud link, changes go to the cloud too."""
        started = await self.gateway.connect_cloud(url)
        config = self.gateway.config
        if self.cert is not None:
            self.cert = await asyncio.to_thread(upgrade, self.cert, config.identity,
                                                config.gateway.data_dir)
        if self.audit_link is None:
            self._start_audit_link()
        return started

    async def stop(self) -> None:
        """Close the socket and open connections, send what is pending; safe to call twice."""
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()
        self._stop.set()
        sender, self._sender = self._sender, None
        if sender is not None:
            await sender
        if self.audit_link is not None:
            with contextlib.suppress(httpx.HTTPError, TimeoutError):
                async with asyncio.timeout(2.0):  # the logout that ended the visit, say
                    await self.audit_link.send_once()
            await self.audit_link.close()
            self.audit_link = None

    # -- sessions, CSRF and login required, for every request -------------------

    @web.middleware
    async def _sessions_mw(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        session = self.sessions.get(request.cookies.get(COOKIE))
        fresh = session is None
        if session is None:
            session = self.sessions.new()
        request[SESSION_KEY] = session
        response = await self._guarded(request, handler, session)
        if fresh:
            set_cookie(response, request[SESSION_KEY])
        return response

    async def _guarded(self, request: web.Request, handler: Handler,
                       session: Session) -> web.StreamResponse:
        if request.method == "POST":
            form = await request.post()
            token = request.headers.get("X-CSRF-Token") or form.get("csrf")
            if not session.csrf_ok(token if isinstance(token, str) else None):
                log.warning("installer: POST %s refused: missing or wrong CSRF token (%s)",
                            request.path, request.remote)
                return web.Response(status=403, text="forbidden: missing or wrong CSRF token")
        if not session.logged_in and not request.path.startswith(PUBLIC):
            if request.path.startswith("/api/"):
                return web.json_response({"error": "login required"}, status=401)
            return see_other("/login")
        return await handler(request)

    # -- pages ------------------------------------------------------------------

    async def _login_page(self, request: web.Request) -> web.Response:
        return pages.login(request[SESSION_KEY], "")

    async def _login(self, request: web.Request) -> web.StreamResponse:
        address = request.remote or "?"
        wait = self.throttle.wait_s(address)
        if wait > 0:
            self.throttle.refused += 1
            log.warning("installer: login from %s throttled (%.0f s left)", address, wait)
            return pages.login(request[SESSION_KEY], f"Too many failed logins: try again in "
                               f"{wait:.0f} s.", status=429)
        password = (await request.post()).get("password")
        ok = isinstance(password, str) and await asyncio.to_thread(self.credentials.check,
                                                                   password)
        if not ok:
            self.throttle.failed(address)
            log.warning("installer: failed login from %s", address)
            return pages.login(request[SESSION_KEY], "Wrong password.", status=401)
        self.throttle.succeeded(address)
        self.sessions.drop(request[SESSION_KEY].id)
        session = request[SESSION_KEY] = self.sessions.new(user="installer")
        self.audit.record("login", session.user, address)
        response = see_other("/")
        set_cookie(response, session)
        return response

    async def _logout(self, request: web.Request) -> web.StreamResponse:
        session = request[SESSION_KEY]
        self.sessions.drop(session.id)
        self.audit.record("logout", session.user, request.remote or "?")
        return see_other("/login")

    async def _status_page(self, request: web.Request) -> web.Response:
        return pages.status(request[SESSION_KEY], self.gateway.config.gateway.id)

    async def _status_json(self, request: web.Request) -> web.Response:
        """The cached snapshot's JSON, serialised once per snapshot (not once per poll)."""
        snapshot = await self.status.snapshot()
        if self._status_body is None or self._status_body[0] is not snapshot:
            self._status_body = (snapshot, json.dumps(snapshot).encode())
        return web.Response(body=self._status_body[1], content_type="application/json")

    async def _live_json(self, request: web.Request) -> web.Response:
        """A node's readings of the last minutes (after `since` ms, if given)."""
        device = request.query.get("device", "")
        try:
            since = int(request.query.get("since", "0"))
        except ValueError:
            return web.json_response({"error": "since: expected unix ms"}, status=400)
        since = max(since, self.live.clock() - LIVE_WINDOW_MS)
        points = self.live.series(device, since)
        return web.json_response({"device": device, "points": [[t, v] for t, v in points]})


def _node_access(gateway: Gateway) -> NodeAccess:
    """The nodes screen's view of the gateway: revocation list, device policy, DTLS server."""
    config = gateway.config
    return NodeAccess(gateway.security.revocations, gateway.access.policy.permits,
                      gateway.access.drop_device, config.gateway.id, config.coap.host,
                      lambda: gateway.coap_port, config.identity.ca)


def set_cookie(response: web.StreamResponse, session: Session) -> None:
    """The session cookie: only over HTTPS, invisible to scripts, never sent cross-site."""
    response.set_cookie(COOKIE, session.id, secure=True, httponly=True, samesite="Strict",
                        path="/")


def see_other(location: str) -> web.Response:
    """A 303 redirect (after a form POST, the browser GETs the next page)."""
    return web.Response(status=303, headers={"Location": location})
