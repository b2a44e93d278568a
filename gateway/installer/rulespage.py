"""The rules screen's routes: read the file, check, dry-run and apply a candidate (JSON answers)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from aiohttp import web

from tandem.gateway.installer import pages, rulesedit
from tandem.gateway.installer.audit import AuditTrail
from tandem.gateway.installer.sessions import Session
from tandem.gateway.pipeline.livevalues import LiveValues

DRY_RUN_MS = 3_600_000
SessionOf = web.RequestKey[Session]


class RulesPage:
    """Routes for one gateway's rules file (none configured: the page says so)."""

    def __init__(self, path: Path | None, live: LiveValues, audit: AuditTrail,
                 session_key: SessionOf) -> None:
        self.path = path
        self.live = live
        self.audit = audit
        self._session = session_key

    def routes(self) -> list[web.RouteDef]:
        """The routes to add to the installer app."""
        return [web.get("/rules", self._page), web.get("/api/rules", self._read),
                web.post("/api/rules/check", self._check),
                web.post("/api/rules/dryrun", self._dry_run),
                web.post("/api/rules/apply", self._apply)]

    async def _page(self, request: web.Request) -> web.Response:
        return pages.rules(request[self._session], str(self.path or ""))

    async def _read(self, request: web.Request) -> web.Response:
        if self.path is None:
            return _no_file()
        try:
            text = await asyncio.to_thread(self.path.read_text, encoding="utf-8")
        except FileNotFoundError:
            text = "version = 1\n"
        return web.json_response({"file": str(self.path), "text": text})

    async def _candidate(self, request: web.Request) -> tuple[Path, rulesedit.Verdict] | None:
        text = (await request.post()).get("text")
        if self.path is None or not isinstance(text, str):
            return None
        return self.path, rulesedit.check(text, self.path)

    async def _check(self, request: web.Request) -> web.Response:
        found = await self._candidate(request)
        if found is None:
            return _no_file()
        verdict = found[1]
        if verdict.ruleset is None:
            return _refused(verdict)
        return web.json_response({"ok": True, "rules": len(verdict.ruleset.rules)})

    async def _dry_run(self, request: web.Request) -> web.Response:
        found = await self._candidate(request)
        if found is None:
            return _no_file()
        ruleset = found[1].ruleset
        if ruleset is None:
            return _refused(found[1])
        since = self.live.clock() - DRY_RUN_MS
        readings = self.live.recent(since)
        firings = await asyncio.to_thread(rulesedit.dry_run, ruleset, readings)
        return web.json_response({"ok": True, "readings": len(readings), "since_ms": since,
                                  "firings": [{"rule": f.rule, "device": f.device,
                                               "t_ms": f.t_ms, "active": f.active}
                                              for f in firings]})

    async def _apply(self, request: web.Request) -> web.Response:
        text = (await request.post()).get("text")
        found = await self._candidate(request)
        if found is None or not isinstance(text, str):
            return _no_file()
        path, verdict = found
        if verdict.ruleset is None:
            return _refused(verdict)
        await asyncio.to_thread(rulesedit.write_atomically, path, text)
        self.audit.record("rules-applied", request[self._session].user, request.remote or "?",
                          file=str(path), rules=len(verdict.ruleset.rules),
                          at=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
        return web.json_response({"ok": True, "rules": len(verdict.ruleset.rules)})


def _refused(verdict: rulesedit.Verdict) -> web.Response:
    return web.json_response({"ok": False, "error": verdict.error, "line": verdict.line},
                             status=422)


def _no_file() -> web.Response:
    return web.json_response({"ok": False, "error": "no [rules] file in the gateway "
                              "configuration", "line": 0}, status=409)
