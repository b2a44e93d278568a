"""The `tandem-cloud` command: serve the app, manage gateways, create and prune the database.

Users, API tokens, the audit log and data keys: cloud/cli/access.py.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import socket
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from sqlalchemy import make_url
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import sessionmaker

from tandem.cloud.access.accounts import AccountError
from tandem.cloud.audit import record as audit
from tandem.cloud.cli import access as cli_access
from tandem.cloud.cli import db as db_cli
from tandem.cloud.cli import models as models_cli
from tandem.cloud.cli import security as security_cli
from tandem.cloud.cli import training as training_cli
from tandem.cloud.cli import worker as worker_cli
from tandem.cloud.config import ENV_CONFIG_FILE, CloudConfig, ConfigError, load_config
from tandem.cloud.datadir import DataDirError
from tandem.cloud.db import engine as database
from tandem.cloud.fleet import registry
from tandem.cloud.fleet.enrolment import EnrolmentError, check_gateway_cert
from tandem.cloud.keys import kms
from tandem.cloud.server import tls_context
from tandem.cloud.serving import application as serving
from tandem.cloud.timeseries import retention
from tandem.cloud.timeseries import store as timeseries
from tandem.cloud.timestamps import iso_utc, now_ms

PROG = "tandem-cloud"
LOOPBACK = "127.0.0.1"
log = logging.getLogger(PROG)


class CommandError(Exception):
    """A command that cannot do what was asked; printed without a traceback."""


def main(argv: Sequence[str] | None = None) -> int:
    """Run one subcommand; return the process exit status."""
    args = _parser().parse_args(argv)
    handler: Callable[[argparse.Namespace], int] = args.handler
    try:
        return handler(args)
    except (CommandError, ConfigError, EnrolmentError, registry.RegistryError, AccountError,
            kms.KeyUnavailable, DataDirError, *security_cli.ERRORS, *db_cli.ERRORS,
            *models_cli.ERRORS) as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 1
    except SQLAlchemyError as exc:
        print(f"{PROG}: database error: {exc}", file=sys.stderr)
        return 1


def _parser() -> argparse.ArgumentParser:
    config = argparse.ArgumentParser(add_help=False)
    config.add_argument("--config", type=Path, metavar="FILE",
                        help=f"TOML config file (default: ${ENV_CONFIG_FILE}, else built-in "
                             "defaults); TANDEM_CLOUD_* variables override it")
    parser = argparse.ArgumentParser(prog=PROG, description="Tandem cloud service.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    serve = commands.add_parser("serve", parents=[config], help="run the HTTPS service",
                                description="Serve ingest and API over HTTPS until "
                                            "SIGINT/SIGTERM.")
    serve.add_argument("--insecure-http", action="store_true",
                       help="serve plain HTTP (only with mode = \"development\"; no TLS)")
    serve.set_defaults(handler=_serve)

    init_db = commands.add_parser("init-db", parents=[config], help="create the database tables",
                                  description="Create the tables, or upgrade them to the "
                                              "code's schema revision (like `db upgrade`); "
                                              "safe to repeat.")
    init_db.set_defaults(handler=_init_db)

    prune = commands.add_parser(
        "prune", parents=[config], help="delete data past its retention",
        description="Delete summaries and events older than [timeseries] "
                    "summary_retention_days / event_retention_days (InfluxDB expires them "
                    "itself) and ledger entries older than [ingest] replay_window_s. "
                    "`serve` does this every prune_interval_s too.")
    prune.set_defaults(handler=_prune)

    gateway = commands.add_parser("gateway", help="manage registered gateways",
                                  description="Register, revoke and list gateways.")
    _gateway_commands(gateway.add_subparsers(dest="action", required=True, metavar="ACTION"),
                      config)
    security_cli.add_commands(commands, config, _config)
    cli_access.add_commands(commands, config, _config)
    db_cli.add_commands(commands, config, _config)
    training_cli.add_commands(commands, config, _config)  # dataset + model (with registry)
    worker_cli.add_commands(commands, config, _config)
    return parser


def _gateway_commands(actions: argparse._SubParsersAction[argparse.ArgumentParser],
                      config: argparse.ArgumentParser) -> None:
    add = actions.add_parser("add", parents=[config], help="register a gateway certificate",
                             description="Check that CERT chains to server.trust_ca and has "
                                         "CN=NAME, then accept batches signed by its key. "
                                         "Re-adding the same certificate changes nothing.")
    add.add_argument("name", metavar="NAME")
    add.add_argument("--cert", type=Path, required=True, metavar="CERT",
                     help="the gateway's PEM certificate")
    add.add_argument("--replace", action="store_true",
                     help="replace a different or revoked registration (key rotation)")
    add.set_defaults(handler=_gateway_add)

    revoke = actions.add_parser("revoke", parents=[config], help="stop accepting a gateway",
                                description="Refuse all further batches from NAME.")
    revoke.add_argument("name", metavar="NAME")
    revoke.set_defaults(handler=_gateway_revoke)

    listing = actions.add_parser("list", parents=[config], help="list gateways",
                                 description="One line per gateway: name, status, created, "
                                             "key fingerprint.")
    listing.add_argument("--json", action="store_true", help="print JSON instead")
    listing.set_defaults(handler=_gateway_list)


def _config(args: argparse.Namespace) -> CloudConfig:
    path = args.config if args.config is not None else os.environ.get(ENV_CONFIG_FILE)
    return load_config(path)


def _serve(args: argparse.Namespace) -> int:
    config = _config(args)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: "
                                                   "%(message)s")
    listening = _listening(config, args.insecure_http)
    try:
        _check_bindable(listening)
    except OSError as exc:
        raise CommandError(f"cannot listen on {listening.host}:{listening.port}: "
                           f"{exc.strerror or exc}") from None
    return serving.serve(config, listening,
                         on_stopped=lambda: print(f"{PROG} stopped", flush=True))


def _listening(config: CloudConfig, insecure: bool) -> serving.Listening:
    host = config.server.host
    if not config.production:
        log.warning("DEVELOPMENT MODE: sessions are signed with a secret kept in %s, "
                    "and the service listens on 127.0.0.1 only%s. Set mode = \"production\" "
                    "with a secret_key to serve other machines.", config.data_dir,
                    "" if host == LOOPBACK else f" (server.host = {host!r} ignored)")
        host = LOOPBACK
    if insecure:
        if config.production:
            raise config.error("mode", "refusing to serve plain HTTP in production mode; "
                               "configure tls_cert and tls_key (or set mode = "
                               "\"development\" on a trusted machine)")
        return serving.Listening(host, config.server.port, None)
    cert, key = config.server.tls_cert, config.server.tls_key
    if cert is None or key is None:
        raise config.error("server.tls_cert", "serving HTTPS needs tls_cert and tls_key "
                           "(or --insecure-http for development)")
    try:
        return serving.Listening(host, config.server.port, tls_context(cert, key), cert, key)
    except (OSError, ValueError) as exc:
        raise config.error("server.tls_cert", f"cannot load certificate/key: {exc}") from None


def _check_bindable(listening: serving.Listening) -> None:
    """Fail with one clear line now rather than inside gunicorn's retry loop."""
    if listening.port == 0:
        return
    with socket.socket(socket.AF_INET6 if ":" in listening.host else socket.AF_INET) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        probe.bind((listening.host, listening.port))


def _init_db(args: argparse.Namespace) -> int:
    config = _config(args)
    with database.cli_engine(config) as engine:
        timeseries.open_store(config, engine).close()
    print(f"database ready: {make_url(config.database.url).render_as_string()}")
    return 0


def _prune(args: argparse.Namespace) -> int:
    config = _config(args)
    with database.cli_engine(config) as engine:
        store = timeseries.open_store(config, engine)
        try:
            deleted = retention.prune(config, store, sessionmaker(engine))
        finally:
            store.close()
    for table, count in sorted(deleted.items()):
        print(f"pruned {count} {table}")
    if not deleted:
        print("nothing to prune (no retention configured)")
    return 0


def _gateway_add(args: argparse.Namespace) -> int:
    config = _config(args)
    if config.server.trust_ca is None:
        raise config.error("server.trust_ca", "set it to the site CA certificate to add gateways")
    identity = check_gateway_cert(args.name, _read(args.cert, "certificate"),
                                  _read(config.server.trust_ca, "server.trust_ca"))
    with database.cli_session(config) as session, session.begin():
        outcome = registry.add_gateway(session, identity.name, identity.cert_pem,
                                       identity.public_key_pem, identity.fingerprint,
                                       now_ms(), replace=args.replace)
        if outcome is not registry.AddOutcome.UNCHANGED:
            audit.record(audit.GATEWAY_ADD, audit.cli_actor(),
                         {"gateway": identity.name, "outcome": outcome.value,
                          "fingerprint": identity.fingerprint}, session=session)
    print(f"gateway {args.name} {outcome.value} ({identity.fingerprint})")
    return 0


def _gateway_revoke(args: argparse.Namespace) -> int:
    with database.cli_session(_config(args)) as session, session.begin():
        changed = registry.revoke_gateway(session, args.name)
        if changed:
            audit.record(audit.GATEWAY_REVOKE, audit.cli_actor(), {"gateway": args.name},
                         session=session)
    print(f"gateway {args.name} {'revoked' if changed else 'already revoked'}")
    return 0


def _gateway_list(args: argparse.Namespace) -> int:
    with database.cli_session(_config(args)) as session:
        rows = [(g.name, g.status, g.created_ms, g.fingerprint)
                for g in registry.list_gateways(session)]
    if args.json:
        print(json.dumps([dict(zip(("name", "status", "created", "fingerprint"), r, strict=True))
                          for r in rows]))
        return 0
    for name, status, created, fingerprint in rows:
        print(f"{name}\t{status}\t{iso_utc(created)}\t{fingerprint}")
    return 0


def _read(path: Path, what: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise CommandError(f"cannot read {what} {path}: {exc.strerror or exc}") from None



if __name__ == "__main__":
    sys.exit(main())
