"""The installer page's HTML: small server-rendered shells; the status page fills in from JSON."""

from __future__ import annotations

from html import escape

from aiohttp import web

from tandem.gateway.installer.sessions import Session

_HEAD = """<!doctype html><html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width,initial-scale=1">
<meta name="csrf-token" content="{csrf}">
<title>{title}</title><link rel="stylesheet" href="/static/installer.css"></head><body>"""


_NAV = ('<nav><a href="/">Status</a> <a href="/rules" id="nav-rules">Rules</a> '
        '<a href="/nodes" id="nav-nodes">Nodes</a> <a href="/enrol" id="nav-enrol">Enrolment</a>'
        '</nav>')


def _page(session: Session, title: str, body: str, status: int = 200) -> web.Response:
    head = _HEAD.format(csrf=escape(session.csrf), title=escape(title))
    return web.Response(text=head + body + "</body></html>", content_type="text/html",
                        status=status, headers={"Cache-Control": "no-store",
                                                "X-Frame-Options": "DENY",
                                                "Content-Security-Policy":
                                                    "default-src 'self'; frame-ancestors 'none'"})


def screen(session: Session, title: str, heading: str, body: str,
           status: int = 200) -> web.Response:
    """A screen of the page: heading and navigation, then body (HTML, escaped by the caller)."""
    return _page(session, f"{title} - Tandem gateway",
                 f"<header><h1>{heading}</h1>{_NAV}</header>{body}", status)


def login(session: Session, error: str, status: int = 200) -> web.Response:
    """The login form (password or the one-time code printed at first start)."""
    problem = f'<p class="error" id="error">{escape(error)}</p>' if error else ""
    body = f"""<main class="login"><h1>Tandem gateway</h1>
<form method="post" action="/login">
<input type="hidden" name="csrf" value="{escape(session.csrf)}">
<label>Installer password or one-time code
<input type="password" name="password" id="password" autofocus required></label>
<button type="submit" id="login">Log in</button></form>{problem}</main>"""
    return _page(session, "Log in - Tandem gateway", body, status)


def status(session: Session, gateway_id: str) -> web.Response:
    """The status page shell; static/status.js polls /api/status and /api/live."""
    body = f"""<header><h1>Gateway <span id="gw">{escape(gateway_id)}</span></h1>{_NAV}
<form method="post" action="/logout">
<input type="hidden" name="csrf" value="{escape(session.csrf)}">
<button type="submit" id="logout">Log out</button></form></header>
<main class="status">
<section id="identity"><h2>Identity</h2><dl id="identity-list"></dl></section>
<section id="cloud"><h2>Cloud link</h2><dl id="cloud-list"></dl></section>
<section id="alarms"><h2>Active alarms</h2><ul id="alarm-list"></ul></section>
<section id="nodes"><h2>Nodes</h2><table><thead><tr><th>Node</th><th>State</th>
<th>Last seen</th><th>Reports</th><th>Gaps</th><th>Latest values</th></tr></thead>
<tbody id="node-rows"></tbody></table></section>
<section id="live"><h2>Live: <select id="live-node"></select></h2>
<svg id="chart" viewBox="0 0 800 240" preserveAspectRatio="none"></svg>
<ul id="live-latest"></ul></section>
<section id="modbus"><h2>Modbus</h2><table><thead><tr><th>Bus</th><th>Unit</th><th>Poll</th>
<th>Polls</th><th>Errors</th><th>Backoff</th></tr></thead><tbody id="modbus-rows"></tbody>
</table></section>
<section id="tasks"><h2>Tasks</h2><p id="task-list"></p><p>Model: <span id="model"></span></p>
</section></main><script src="/static/status.js"></script>"""
    return _page(session, "Status - Tandem gateway", body)


def rules(session: Session, path: str) -> web.Response:
    """The rules editor; static/rules.js checks, dry-runs and applies through /api/rules."""
    body = f"""<header><h1>Rules <span id="rules-file">{escape(path)}</span></h1>{_NAV}</header>
<main class="rules"><section>
<textarea id="rules-text" spellcheck="false" rows="24"></textarea>
<p><button id="check">Check</button> <button id="dryrun">Dry run (last hour)</button>
<button id="apply">Apply</button></p>
<p id="rules-error" class="error"></p><p id="rules-result"></p>
<table><thead><tr><th>Time</th><th>Rule</th><th>Node</th><th>Transition</th></tr></thead>
<tbody id="firings"></tbody></table></section></main>
<script src="/static/rules.js"></script>"""
    return _page(session, "Rules - Tandem gateway", body)
