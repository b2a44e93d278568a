"""`tandem-gateway enrol | renew | privacy report`: identity and what left the site."""

from __future__ import annotations

import argparse
import sys
from typing import TypeAlias

from tandem.gateway.config import GatewayConfig
from tandem.gateway.identity import enrolment as enrol_client
from tandem.gateway.identity.keystore import KeyStoreError
from tandem.gateway.privacy.gate import read_counts
from tandem.gateway.store.database import DATABASE_FILE, GatewayDatabase

Subparsers: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"
COMMANDS = ("enrol", "renew", "privacy")


def add_commands(sub: Subparsers, config: argparse.ArgumentParser) -> None:
    """Add enrol, renew and privacy (with the shared --config parent)."""
    enrol = sub.add_parser("enrol", parents=[config], help="enrol with the cloud",
                           description="Create the identity key (TPM or file key store) if "
                                       "needed, send a CSR signed by it with the installer "
                                       "token, store the certificate and the cloud's keys.")
    enrol.add_argument("--cloud", required=True, metavar="URL",
                       help="cloud base URL (its certificate must chain to identity.ca)")
    enrol.add_argument("--token", required=True, help="one-time installer token")
    renew = sub.add_parser("renew", parents=[config], help="renew the certificate",
                           description="A new certificate for the current key, asked for "
                                       "with a request signed by that key.")
    renew.add_argument("--cloud", metavar="URL", help="default: the URL of the enrolment")
    privacy = sub.add_parser("privacy", parents=[config], help="what left the site",
                             description="Per field and privacy action, how many records "
                                         "and values were filed for the cloud.")
    privacy.add_argument("action", choices=["report"])


def run(args: argparse.Namespace, config: GatewayConfig) -> int:
    """Run one of COMMANDS."""
    try:
        if args.command == "enrol":
            result = enrol_client.enrol(config, args.cloud, args.token)
        elif args.command == "renew":
            result = enrol_client.renew(config, args.cloud)
        else:
            return _report(config)
    except (enrol_client.EnrolError, KeyStoreError, OSError) as exc:
        print(f"tandem-gateway: {args.command} failed: {exc}", file=sys.stderr)
        return 1
    print(f"enrolled {result.gateway} in group {result.group} (certificate serial "
          f"{result.serial}); policy key {'received' if result.policy_key_pem else 'absent'}")
    return 0


def _report(config: GatewayConfig) -> int:
    path = config.gateway.data_dir / DATABASE_FILE
    if not path.exists():
        print(f"no gateway database at {path}")
        return 1
    database = GatewayDatabase(path)
    try:
        rows = database.call_sync(lambda: read_counts(database.connection))
    finally:
        database.close()
    print(f"{'field':<20} {'action':<13} {'records':>10} {'values':>10}")
    for name, action, records, values in rows:
        print(f"{name:<20} {action:<13} {records:>10} {values:>10}")
    return 0
