"""The task kinds an executor can run: kind -> function of the task's args to a result map.

Both the gateway's worker pool and the cloud's queue workers look kinds up
here, so a task migrated between them computes the same thing. Inputs travel
in the args (snippets as raw uplink records, histories as pairs, windows as
triples): a task reads no local state, so it can run wherever placed.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from tandem.wire.errors import WireError
from tandem.wire.raw import decode_raw_record
from tandem.wire.tasks import drift, spectral, trend

TaskFunction = Callable[[dict[str, Any]], dict[str, Any]]


def _spectral(args: dict[str, Any]) -> dict[str, Any]:
    return spectral.analyse_batch([decode_raw_record(r) for r in args["snippets"]])


def _drift(args: dict[str, Any]) -> dict[str, Any]:
    return drift.score_drift([(int(t), float(s)) for t, s in args["history"]],
                             int(args["split_ms"]))


def _query(args: dict[str, Any]) -> trend.TrendQuery:
    return trend.TrendQuery(end_ms=int(args["end_ms"]),
                            min_slope_per_day=float(args.get("min_slope", 0.0)))


def _trend_map(args: dict[str, Any]) -> dict[str, Any]:
    windows = [(str(d), int(t), float(v)) for d, t, v in args["windows"]]
    return {"partial": trend.encode_partial(trend.map_windows(windows, _query(args)))}


def _trend_reduce(args: dict[str, Any]) -> dict[str, Any]:
    partials = [trend.decode_partial(p) for p in args["partials"]]
    return {"rising": trend.reduce_partials(partials, _query(args))}


def _burn(args: dict[str, Any]) -> dict[str, Any]:
    """A compute-bound task of a declared size, for load surges in tests and benchmarks."""
    total = 0
    for i in range(int(args["iterations"])):
        total = (total + i * i) % 1_000_003
    return {"checksum": total}


KINDS: dict[str, TaskFunction] = {
    "spectral": _spectral, "drift": _drift, "trend_map": _trend_map,
    "trend_reduce": _trend_reduce, "burn": _burn,
}


def run(kind: str, args: dict[str, Any]) -> dict[str, Any]:
    """The result of running kind on args; WireError("schema") for an unknown kind or bad args."""
    function = KINDS.get(kind)
    if function is None:
        raise WireError("schema", f"unknown task kind {kind!r}")
    try:
        return function(args)
    except (KeyError, TypeError, ValueError) as error:
        raise WireError("schema", f"bad {kind} task args: {error!r}") from error
