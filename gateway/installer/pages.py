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
        '<a href="/modbus" id="nav-modbus">Modbus</a> <a href="/nodes" id="nav-nodes">Nodes</a> '
        '<a href="/enrol" id="nav-enrol">Enrolment</a></nav>')


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


def modbus(session: Session, path: str) -> web.Response:
    """The Modbus screen; static/modbus.js lists, checks, applies and reads through /api/modbus."""
    body = f"""<header><h1>Modbus <span id="modbus-file">{escape(path)}</span></h1>{_NAV}</header>
<main class="modbus"><section><h2>Buses and units</h2><p id="file-error" class="error"></p>
<table><thead><tr><th>Bus</th><th>Address</th><th>Unit</th><th>Poll</th><th>Polls</th>
<th>Errors</th><th>Backoff</th><th>Map</th><th></th></tr></thead><tbody id="unit-rows"></tbody>
</table><p id="read-error" class="error"></p><p id="read-result"></p>
<table id="read-table" hidden><thead><tr><th>Point</th><th>Value</th><th>Unit</th>
<th>Register</th></tr></thead>
<tbody id="read-rows"></tbody></table></section>
<section><h2>Add a bus</h2><form id="bus-form" class="fields">
<label>Name <input id="bus-name" name="name" required></label>
<label>Kind <select id="bus-kind" name="kind"><option>tcp</option><option>rtu</option></select>
</label><label>Host (TCP) <input id="bus-host" name="host"></label>
<label>TCP port <input id="bus-tcp-port" name="tcp_port" type="number" value="502"></label>
<label>Serial port (RTU) <input id="bus-port" name="port"></label>
<label>Baud rate <input id="bus-baudrate" name="baudrate" type="number" value="19200"></label>
<label>Parity <select id="bus-parity" name="parity"><option>E</option><option>N</option>
<option>O</option></select></label>
<label>Timeout (s) <input id="bus-timeout" name="timeout_s" type="number" step="any"
value="0.5"></label>
<button type="button" id="add-bus">Add bus</button></form>
<p id="bus-error" class="error"></p><p id="bus-result"></p></section>
<section><h2>Unit and register map</h2><form id="unit-form" class="fields">
<label>Bus <select id="unit-bus" name="bus"></select></label>
<label>Unit name <input id="unit-name" name="name" required></label>
<label>Unit id <input id="unit-id" name="unit_id" type="number" min="1" max="247" value="1">
</label><label>Poll (s) <input id="unit-poll" name="poll_s" type="number" step="any"
value="1"></label>
<label>Map file <input id="map-name" name="map_name" placeholder="pump.toml"></label>
<label>Upload <input id="map-file" type="file" accept=".toml,text/plain"></label></form>
<textarea id="map-text" spellcheck="false" rows="16"></textarea>
<p><button type="button" id="map-check">Check</button>
<button type="button" id="unit-apply">Apply</button></p>
<p id="map-error" class="error"></p><p id="map-result"></p></section></main>
<script src="/static/modbus.js"></script>"""
    return _page(session, "Modbus - Tandem gateway", body)
