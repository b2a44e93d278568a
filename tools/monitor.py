"""`tandem monitor`: a serial console that shows the node's JSON-line events readably.

The node prints one JSON object per event ({"ev": "ack", ...}); this turns
them into one aligned line each, and passes other lines (tracebacks, the
REPL banner) through as they are. Works on any serial device pyserial can
open, including a pty.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any, Protocol

from tqdm import tqdm

# How to show the most useful fields first; the rest follow as key=value.
_LEADS: dict[str, tuple[str, ...]] = {
    "boot": ("device", "board", "boot", "channels"),
    "connected": ("gateway", "handshake_ms"),
    "ack": ("seq", "code", "rtt_ms"),
    "error": ("error", "detail", "retry_ms"),
    "fatal": ("error", "detail"),
    "exit": ("reports", "sampled", "peak_heap", "jitter_us"),
    "command": ("id", "applied"),
}
_LEVEL_MARK = {"fatal": "!!", "error": "! ", "rejected": "! ", "bad_command": "! ",
               "dropped": "~ ", "busy": "~ "}


class LineSource(Protocol):
    """What the monitor reads: a pyserial Serial, or anything with readline()."""

    def readline(self) -> bytes: ...


def _value(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    if isinstance(v, dict):
        return "{" + " ".join(f"{k}={_value(x)}" for k, x in v.items()) + "}"
    if isinstance(v, list):
        return ",".join(_value(x) for x in v)
    return str(v)


def format_event(event: dict[str, Any]) -> str:
    """One readable line for one event: name, leading fields, the rest sorted."""
    name = str(event.get("ev", "?"))
    lead = _LEADS.get(name, ())
    parts = [f"{k}={_value(event[k])}" for k in lead if k in event]
    values = event.get("values")
    rest = sorted(k for k in event if k not in lead and k not in ("ev", "values"))
    parts += [f"{k}={_value(event[k])}" for k in rest]
    if isinstance(values, dict):
        parts.append(" ".join(f"{k}={_value(values[k])}" for k in sorted(values)))
    return f"{_LEVEL_MARK.get(name, '  ')}{name:<10} " + " ".join(parts)


def format_line(raw: bytes, pretty: bool = True) -> tuple[str, bool]:
    """(text to show, whether it was an event)."""
    text = raw.decode("utf-8", "replace").rstrip("\r\n")
    if pretty and text.startswith("{"):
        try:
            event = json.loads(text)
        except ValueError:
            return text, False
        if isinstance(event, dict) and "ev" in event:
            return format_event(event), True
    return text, False


def lines(source: LineSource, stop: Callable[[], bool]) -> Iterator[bytes]:
    """Complete lines from source until stop() (a read timeout yields nothing)."""
    pending = b""
    while not stop():
        chunk = source.readline()
        if not chunk:
            continue
        pending += chunk
        if pending.endswith(b"\n"):
            yield pending
            pending = b""


def stamp() -> str:
    now = time.time()
    return time.strftime("%H:%M:%S", time.localtime(now)) + f".{int(now * 1000) % 1000:03d}"


def run(source: LineSource, name: str, count: int = 0, pretty: bool = True,
        timestamps: bool = False) -> int:
    """Show lines from source until count events (0: forever); returns the events seen."""
    seen = [0]  # events so far, read by the stop test
    with tqdm(desc=name, unit="ev", file=sys.stderr, leave=False,
              disable=not sys.stderr.isatty()) as bar:
        for raw in lines(source, lambda: bool(count) and seen[0] >= count):
            text, is_event = format_line(raw, pretty)
            seen[0] += is_event
            bar.update(int(is_event))
            tqdm.write((stamp() + " " if timestamps else "") + text, file=sys.stdout)
            sys.stdout.flush()
    return seen[0]
