"""`tandem-gateway quarantine list`: the records the pipeline kept aside, and why."""

from __future__ import annotations

import argparse
import json
from datetime import UTC, datetime

from tandem.gateway.cli.security import Subparsers
from tandem.gateway.config import GatewayConfig
from tandem.gateway.pipeline.quarantine import list_records
from tandem.gateway.store.database import DATABASE_FILE, GatewayDatabase

COMMANDS = ("quarantine",)


def add_commands(sub: Subparsers, config: argparse.ArgumentParser) -> None:
    """Add `quarantine list` (with the shared --config parent)."""
    command = sub.add_parser("quarantine", parents=[config], help="records kept aside",
                             description="Reports the gateway could not process: kept in "
                                         "its database with the device and the reason.")
    command.add_argument("action", choices=["list"])
    command.add_argument("--limit", type=int, default=100, help="newest N records (100)")
    command.add_argument("--json", action="store_true", help="one JSON object per line")


def run(args: argparse.Namespace, config: GatewayConfig) -> int:
    """List quarantined records, newest first; exit 0 also when there are none."""
    path = config.gateway.data_dir / DATABASE_FILE
    if not path.exists():
        print(f"no gateway database at {path}")
        return 1
    database = GatewayDatabase(path)
    try:
        records = database.call_sync(lambda: list_records(database.connection, args.limit))
    finally:
        database.close()
    for r in records:
        if args.json:
            print(json.dumps({"id": r.id, "device": r.device, "reason": r.reason,
                              "detail": r.detail, "received_ms": r.received_ms,
                              "quarantined_ms": r.quarantined_ms, "record": r.record}))
        else:
            at = datetime.fromtimestamp(r.quarantined_ms / 1000, UTC).isoformat(timespec="seconds")
            print(f"{r.id:>6} {at} {r.device} {r.reason}: {r.detail}")
    if not args.json:
        print(f"{len(records)} quarantined record(s) shown")
    return 0
