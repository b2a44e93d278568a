"""Hot reload of the rules file: poll, re-validate, apply; a bad file changes nothing.

The error (file:line: field: problem) is logged and kept in `last_error`
while the rules loaded before keep running.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from pathlib import Path

from tandem.gateway.filewatch import FileWatch
from tandem.gateway.rules.definitions import RuleSet
from tandem.gateway.rules.loader import RulesError, load_rules
from tandem.gateway.supervisor import wait_or_stop

log = logging.getLogger(__name__)


class RulesReloader:
    """Watches one rules file and hands each valid new version to `apply`."""

    def __init__(self, path: Path, apply: Callable[[RuleSet], None],
                 on_result: Callable[[str], None] | None = None) -> None:
        self.path = path
        self.last_error = ""
        self._apply = apply
        self._on_result = on_result
        self._watch = FileWatch(path)
        self._watch.changed()  # the running rules came from the file as it is now

    def check(self) -> bool | None:
        """Reload if the file changed: True applied, False refused, None unchanged."""
        if not self._watch.changed():
            return None
        try:
            ruleset = load_rules(self.path)
        except RulesError as exc:
            self.last_error = str(exc)
            log.error("rules not reloaded, the previous rules stay in force: %s", exc)
            self._report("error")
            return False
        self._apply(ruleset)
        self.last_error = ""
        log.info("rules reloaded from %s: %d rules", self.path, len(ruleset.rules))
        self._report("ok")
        return True

    async def run(self, stop: asyncio.Event, poll_s: float = 1.0) -> None:
        """Check every `poll_s` seconds until `stop` is set."""
        while not await wait_or_stop(stop, poll_s):
            self.check()

    def _report(self, result: str) -> None:
        if self._on_result is not None:
            self._on_result(result)
