"""Rules on the installer page: validate a candidate, dry-run it over recent readings, apply it.

Validation is the loader's own (messages read `file:line: field: problem`).
The dry run replays the readings the page kept (gateway/pipeline/livevalues.py, up to the last
hour) through a fresh feature bank and rule engine, the same evaluation the
reflex makes, without actions; model scores are not replayed. Apply writes
the file atomically; the daemon's rules reloader picks it up.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from tandem.gateway.features.extract import FeatureBank
from tandem.gateway.rules.definitions import Input, RuleSet
from tandem.gateway.rules.engine import RuleEngine
from tandem.gateway.rules.loader import RulesError, parse_rules_text

MAX_FIRINGS = 500
MAX_TEXT = 256 * 1024


@dataclass(frozen=True, slots=True)
class Firing:
    """A rule the candidate would have fired (or cleared) for a device at t_ms."""

    rule: str
    device: str
    t_ms: int
    active: bool


@dataclass(frozen=True, slots=True)
class Verdict:
    """A candidate rules text: its rule set, or the loader's message and the line it names."""

    ruleset: RuleSet | None
    error: str = ""
    line: int = 0


def check(text: str, path: Path) -> Verdict:
    """Validate a candidate rules text as if it were the file at `path`."""
    if len(text) > MAX_TEXT:
        return Verdict(None, f"{path}: larger than {MAX_TEXT} bytes")
    try:
        return Verdict(parse_rules_text(text, str(path), path.parent))
    except RulesError as exc:
        found = re.match(rf"{re.escape(str(path))}:(\d+):", str(exc))
        return Verdict(None, str(exc), int(found[1]) if found else 0)


def dry_run(ruleset: RuleSet,
            readings: list[tuple[str, int, dict[str, float]]]) -> list[Firing]:
    """What the rules would have done over `readings` (device, t_ms, values), oldest first."""
    bank, engine = FeatureBank(ruleset.features), RuleEngine(ruleset.rules)
    firings: list[Firing] = []
    for device, t_ms, values in readings:
        for channel, value in values.items():
            bank.add(device, channel, t_ms, value)

        def lookup(ref: Input, device: str = device,
                   values: dict[str, float] = values) -> float | None:
            if ref.feature is None:
                return values.get(ref.channel)
            return bank.feature(device, ref.channel, ref.feature)

        for t in engine.evaluate(device, t_ms, values.keys(), lookup):
            firings.append(Firing(t.rule.name, t.device, t.t_ms, t.active))
            if len(firings) >= MAX_FIRINGS:
                return firings
    return firings


def write_atomically(path: Path, text: str) -> None:
    """Replace the rules file in one step (the reloader never sees half a file)."""
    tmp = path.with_name(f".{path.name}.installer.tmp")
    with open(tmp, "w", encoding="utf-8") as out:
        out.write(text)
        out.flush()
        os.fsync(out.fileno())
    if path.exists():
        os.chmod(tmp, path.stat().st_mode & 0o777)
    tmp.replace(path)
