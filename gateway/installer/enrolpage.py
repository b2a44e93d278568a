"""The enrolment screen: cloud URL and one-time token in, each step's outcome out.

Server-rendered (a form POST, no script): the wizard (enrolwizard.py) runs in
a thread with the daemon's open key store; on success the daemon starts its
cloud link in-process (Gateway.connect_cloud), and the screen says what
started. One enrolment at a time; every attempt goes to the audit trail.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from html import escape

from aiohttp import web

from tandem.gateway.config import GatewayConfig
from tandem.gateway.identity import enrolled
from tandem.gateway.identity.keystore import GatewayKeyStore
from tandem.gateway.installer import enrolwizard, pages
from tandem.gateway.installer.audit import AuditTrail
from tandem.gateway.installer.pagecert import PageCert
from tandem.gateway.installer.sessions import Session

log = logging.getLogger(__name__)

Connect = Callable[[str], Awaitable[list[str]]]
SessionOf = web.RequestKey[Session]


class EnrolPage:
    """GET /enrol shows the state and the form; POST /enrol runs the wizard."""

    def __init__(self, config: Callable[[], GatewayConfig],
                 keystore: Callable[[], GatewayKeyStore],
                 audit: AuditTrail, session_key: SessionOf, connect: Connect,
                 cert: Callable[[], PageCert | None]) -> None:
        self._config = config
        self._keystore = keystore
        self._audit = audit
        self._session = session_key
        self._connect = connect
        self._cert = cert
        self._busy = asyncio.Lock()
        self.clients: enrolwizard.ClientFactory | None = None  # tests: an in-process cloud

    def routes(self) -> list[web.RouteDef]:
        """The routes to add to the installer app."""
        return [web.get("/enrol", self._page), web.post("/enrol", self._enrol)]

    async def _page(self, request: web.Request) -> web.Response:
        return await self._render(request, None, "")

    async def _enrol(self, request: web.Request) -> web.Response:
        form = await request.post()
        url, token = str(form.get("cloud_url", "")), str(form.get("token", ""))
        if self._busy.locked():
            return await self._render(request, None, url, "An enrolment is already running.",
                                      409)
        async with self._busy:
            outcome = await asyncio.to_thread(enrolwizard.run, self._config(), url, token,
                                              self._keystore(), self.clients)
            if outcome.enrolment is not None:
                started = await self._connect(outcome.enrolment.cloud)
                outcome.add("link", True, _link_text(started))
        session = request[self._session]
        failed = next((s for s in outcome.steps if not s.ok), None)
        if failed is not None:
            log.warning("installer: enrolment with %s failed at step %s: %s", url.strip(),
                        failed.name, failed.text)
        self._audit.record("enrol", session.user, request.remote or "?", cloud=url.strip(),
                           ok=outcome.ok, step=failed.name if failed else "",
                           group=outcome.enrolment.group if outcome.enrolment else "")
        return await self._render(request, outcome, url, status=200 if outcome.ok else 422)

    async def _render(self, request: web.Request, outcome: enrolwizard.Outcome | None,
                      url: str, problem: str = "", status: int = 200) -> web.Response:
        config = self._config()
        current = await asyncio.to_thread(_load, config)
        body = (f'<main class="enrol"><section><h2>State</h2>{_state(current, self._cert())}'
                f'</section><section><h2>Enrol with the cloud</h2>'
                f'{_form(request[self._session], url or (current.cloud if current else ""))}'
                f'{_outcome(outcome, problem)}</section></main>')
        return pages.screen(request[self._session], "Enrolment",
                            f"Enrolment of <span id=\"gw\">{escape(config.gateway.id)}</span>",
                            body, status)


def _load(config: GatewayConfig) -> enrolled.Enrolment | None:
    try:
        return enrolled.load(config.gateway.data_dir)
    except enrolled.EnrolmentFilesError:
        return None


def _state(current: enrolled.Enrolment | None, cert: PageCert | None) -> str:
    if current is None:
        state = '<p id="enrol-state" class="bad">Not enrolled.</p>'
    else:
        state = (f'<p id="enrol-state" class="ok">Enrolled with {escape(current.cloud)} in group '
                 f'{escape(current.group)} (certificate serial {escape(current.serial)}).</p>')
    if cert is not None and cert.bootstrap:
        state += ('<p id="page-cert">This page uses a bootstrap certificate; its SHA-256 '
                  f'fingerprint is <code>{escape(cert.fingerprint)}</code>.</p>')
    return state


def _form(session: Session, url: str) -> str:
    return f"""<form method="post" action="/enrol" id="enrol-form">
<input type="hidden" name="csrf" value="{escape(session.csrf)}">
<label>Cloud address <input name="cloud_url" id="cloud-url" value="{escape(url)}"
 placeholder="https://cloud.example.com" required></label>
<label>One-time token <input name="token" id="token" autocomplete="off" required></label>
<button type="submit" id="enrol">Enrol</button></form>"""


def _outcome(outcome: enrolwizard.Outcome | None, problem: str) -> str:
    if problem:
        return f'<p class="error" id="enrol-result">{escape(problem)}</p>'
    if outcome is None:
        return ""
    items = "".join(f'<li class="{"ok" if s.ok else "bad"}" data-step="{s.name}" '
                    f'data-ok="{str(s.ok).lower()}"><b>{escape(s.name)}</b>: {escape(s.text)}'
                    f"</li>" for s in outcome.steps)
    verdict = ('<p class="ok" id="enrol-result">Enrolled.</p>' if outcome.ok else
               '<p class="error" id="enrol-result">Not enrolled: see the step that failed.</p>')
    return f'{verdict}<ol id="enrol-steps">{items}</ol>'


def _link_text(started: list[str]) -> str:
    restart = [s for s in started if s.startswith("restart")]
    if restart:
        return restart[0].capitalize() + "."
    if not started:
        return "The cloud link was already running; it uses the new registration now."
    return f"Cloud link started in the running gateway: {', '.join(started)}."
