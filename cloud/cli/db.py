"""`tandem-cloud db` commands: upgrade the schema, show its revision and the revisions shipped."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import TypeAlias

from sqlalchemy import make_url

from tandem.cloud.config import CloudConfig
from tandem.cloud.db import engine as database
from tandem.cloud.db import migrate

Subparsers: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"
ERRORS = (migrate.SchemaError,)


def add_commands(commands: Subparsers, config: argparse.ArgumentParser,
                 load: Callable[[argparse.Namespace], CloudConfig]) -> None:
    """Add the db command group; load reads the --config given."""
    db = commands.add_parser(
        "db", help="schema migrations (upgrade, current, history)",
        description="The database schema is versioned with Alembic. `serve` and every "
                    "other command upgrade it to the code's revision on start; `db upgrade` "
                    "does only that, e.g. before a rollout. See docs/migrations.md.")
    actions = db.add_subparsers(dest="action", required=True, metavar="ACTION")
    upgrade = actions.add_parser(
        "upgrade", parents=[config], help="upgrade the schema to the code's revision",
        description="Apply every revision the database lacks, in one transaction. A database "
                    "made before migrations is checked against revision 0001 and adopted.")
    upgrade.add_argument("--to", default="head", metavar="REVISION",
                         help="stop at REVISION (default: %(default)s)")
    upgrade.set_defaults(handler=_upgrade, load_config=load)
    current = actions.add_parser(
        "current", parents=[config], help="show the database's revision",
        description="Print the database's revision and whether it is the code's head; "
                    "changes nothing.")
    current.add_argument("--check", action="store_true",
                         help="exit with status 1 unless the database is at head")
    current.set_defaults(handler=_current, load_config=load)
    history = actions.add_parser("history", help="list the revisions this code ships",
                                 description="One line per revision, newest first.")
    history.set_defaults(handler=_history)
    revision = actions.add_parser(
        "revision", help="write a new revision file (development)",
        description="Write the next numbered revision into the source tree's "
                    "cloud/db/migrations/versions/; with --autogenerate, filled with what the "
                    "models have that the migrations lack. Review it, then test it.")
    revision.add_argument("-m", "--message", required=True, help="what the revision does")
    revision.add_argument("--autogenerate", action="store_true",
                          help="compare the models with the migrations to write its body")
    revision.set_defaults(handler=_revision)


def _upgrade(args: argparse.Namespace) -> int:
    config: CloudConfig = args.load_config(args)
    engine = database.connect(config)  # creates the data key file on first use too
    try:
        status = migrate.upgrade(engine, args.to)
    finally:
        engine.dispose()
    print(f"{_url(config)}: {_describe(status)}")
    return 0


def _current(args: argparse.Namespace) -> int:
    config: CloudConfig = args.load_config(args)
    engine = database.open_engine(config.database.url)
    try:
        status = migrate.status(engine)
    finally:
        engine.dispose()
    print(f"{_url(config)}: {_describe(status)}")
    return 1 if args.check and not status.up_to_date else 0


def _history(_args: argparse.Namespace) -> int:
    for line in migrate.history():
        print(line)
    return 0


def _revision(args: argparse.Namespace) -> int:
    path = migrate.new_revision(args.message, autogenerate=args.autogenerate)
    print(f"wrote {path}")
    return 0


def _describe(status: migrate.Status) -> str:
    if status.up_to_date:
        return f"at revision {status.head} (head)"
    if status.unversioned_tables:
        return (f"made before migrations (no revision); `tandem-cloud db upgrade` checks it "
                f"and adopts it as {migrate.BASELINE}, then upgrades to {status.head}")
    if not status.current:
        return f"empty (no revision); head is {status.head}"
    return (f"at revision {', '.join(status.current)}, behind head {status.head}; "
            "run `tandem-cloud db upgrade`")


def _url(config: CloudConfig) -> str:
    return make_url(config.database.url).render_as_string()
