"""`tandem-cloud` commands for access control: users, API tokens, the audit log, data keys.

    user add NAME --role R [--password-file F | --no-password] [--email E]
    user list [--json] | user disable NAME | user enable NAME
    token create --user U --name N [--expires-days D] [--note TEXT]   (prints the token once)
    token list [--user U] [--json] | token revoke --user U --name N
    audit verify [--expect-head HASH]   (exit 1 naming the first bad row)
    key rotate                          (new data key for new values; old ones stay readable)

Every change is recorded in the audit log, in the same transaction, as cli:<login>.
"""

from __future__ import annotations

import argparse
import getpass
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeAlias

from tandem.cloud.access import accounts
from tandem.cloud.access.permissions import USER_ROLES
from tandem.cloud.audit import chain as auditlog
from tandem.cloud.audit import record as audit
from tandem.cloud.config import CloudConfig
from tandem.cloud.db import engine as database
from tandem.cloud.keys import kms
from tandem.cloud.timestamps import iso_utc, now_ms

Actions: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"
ConfigLoader = Callable[[argparse.Namespace], CloudConfig]
DAY_MS = 24 * 3600 * 1000


def add_commands(commands: Actions, config: argparse.ArgumentParser,
                 load: ConfigLoader) -> None:
    """Add the user, token, audit and key commands; load turns parsed args into a config."""
    _user_commands(_group(commands, "user", "manage users and their roles"), config, load)
    _token_commands(_group(commands, "token", "manage API tokens"), config, load)
    verify = _group(commands, "audit", "check the audit log").add_parser(
        "verify", parents=[config], help="check the audit log's hash chain",
        description="Recompute the audit log's hash chain; exit 1 naming the first row "
                    "that was changed or follows a deleted one.")
    verify.add_argument("--expect-head", metavar="HASH",
                        help="the head hash recorded earlier (detects rows cut off the end)")
    verify.set_defaults(handler=_bind(_audit_verify, load))
    rotate = _group(commands, "key", "manage the data keys of encrypted columns").add_parser(
        "rotate", parents=[config], help="start encrypting with a new data key",
        description="Append a new key to the local key file; new values use it, old values "
                    "keep naming (and needing) the key they were encrypted with.")
    rotate.set_defaults(handler=_bind(_key_rotate, load))


def _group(commands: Actions, name: str, summary: str) -> Actions:
    parser = commands.add_parser(name, help=summary, description=summary[0].upper()
                                 + summary[1:] + ".")
    return parser.add_subparsers(dest="action", required=True, metavar="ACTION")


def _user_commands(actions: Actions, config: argparse.ArgumentParser,
                   load: ConfigLoader) -> None:
    add = actions.add_parser("add", parents=[config], help="create a user",
                             description="Create a user with a role; the password is asked "
                                         "for twice unless --password-file or --no-password.")
    add.add_argument("name", metavar="NAME")
    add.add_argument("--role", required=True, choices=[str(r) for r in USER_ROLES])
    secret = add.add_mutually_exclusive_group()
    secret.add_argument("--password-file", type=Path, metavar="FILE",
                        help="read the password from the first line of FILE")
    secret.add_argument("--no-password", action="store_true",
                        help="no password: the user can only use API tokens (automation)")
    add.add_argument("--email", help="contact address (stored encrypted)")
    add.set_defaults(handler=_bind(_user_add, load))
    listing = actions.add_parser("list", parents=[config], help="list users",
                                 description="One line per user: name, role, state, "
                                             "password or not, created, email.")
    listing.add_argument("--json", action="store_true", help="print JSON instead")
    listing.set_defaults(handler=_bind(_user_list, load))
    for verb, active in (("disable", False), ("enable", True)):
        change = actions.add_parser(verb, parents=[config], help=f"{verb} a user",
                                    description=f"{verb.capitalize()} NAME's sign-in, "
                                                "sessions and API tokens.")
        change.add_argument("name", metavar="NAME")
        change.set_defaults(handler=_bind(_user_activation(active), load))


def _token_commands(actions: Actions, config: argparse.ArgumentParser,
                    load: ConfigLoader) -> None:
    create = actions.add_parser("create", parents=[config], help="issue an API token",
                                description="Issue a bearer token for USER and print it "
                                            "once; only its hash is stored.")
    create.add_argument("--user", required=True, metavar="USER")
    create.add_argument("--name", required=True, metavar="NAME")
    create.add_argument("--expires-days", type=int, metavar="DAYS",
                        help="days until it expires (default and maximum: "
                             "[security] token_max_days; 0 = never, if that is 0)")
    create.add_argument("--note", help="what it is for (stored encrypted)")
    create.set_defaults(handler=_bind(_token_create, load))
    listing = actions.add_parser("list", parents=[config], help="list API tokens",
                                 description="One line per token: user, name, state, "
                                             "created, expires.")
    listing.add_argument("--user", metavar="USER")
    listing.add_argument("--json", action="store_true", help="print JSON instead")
    listing.set_defaults(handler=_bind(_token_list, load))
    revoke = actions.add_parser("revoke", parents=[config], help="revoke an API token",
                                description="Stop accepting a token at once.")
    revoke.add_argument("--user", required=True, metavar="USER")
    revoke.add_argument("--name", required=True, metavar="NAME")
    revoke.set_defaults(handler=_bind(_token_revoke, load))


def _bind(handler: Callable[[argparse.Namespace, CloudConfig], int],
          load: ConfigLoader) -> Callable[[argparse.Namespace], int]:
    return lambda args: handler(args, load(args))


def _user_add(args: argparse.Namespace, config: CloudConfig) -> int:
    password = None if args.no_password else _password(args.password_file)
    with database.cli_session(config) as session, session.begin():
        accounts.add_user(session, args.name, args.role, password, now_ms(), args.email)
        audit.record(audit.USER_ADD, audit.cli_actor(),
                     {"user": args.name, "role": args.role, "password": password is not None},
                     session=session)
    print(f"user {args.name} added ({args.role})")
    return 0


def _user_list(args: argparse.Namespace, config: CloudConfig) -> int:
    with database.cli_session(config) as session:
        rows: list[dict[str, Any]] = [{"name": u.name, "role": u.role, "active": u.active,
                 "password": u.password_hash is not None, "created": u.created_ms,
                 "email": u.email} for u in accounts.list_users(session)]
    if args.json:
        print(json.dumps(rows))
        return 0
    for r in rows:
        print("\t".join((r["name"], r["role"], "active" if r["active"] else "disabled",
                         "password" if r["password"] else "token-only", iso_utc(r["created"]),
                         r["email"] or "-")))
    return 0


def _user_activation(active: bool) -> Callable[[argparse.Namespace, CloudConfig], int]:
    verb = "enabled" if active else "disabled"

    def change(args: argparse.Namespace, config: CloudConfig) -> int:
        with database.cli_session(config) as session, session.begin():
            changed = accounts.set_active(session, args.name, active)
            if changed:
                audit.record(audit.USER_ENABLE if active else audit.USER_DISABLE,
                             audit.cli_actor(), {"user": args.name}, session=session)
        print(f"user {args.name} {verb if changed else 'already ' + verb}")
        return 0

    return change


def _token_create(args: argparse.Namespace, config: CloudConfig) -> int:
    now = now_ms()
    days = _expiry_days(args.expires_days, config)
    expires = None if days == 0 else now + days * DAY_MS
    with database.cli_session(config) as session, session.begin():
        secret = accounts.create_token(session, args.user, args.name, now, expires, args.note)
        audit.record(audit.TOKEN_CREATE, audit.cli_actor(),
                     {"user": args.user, "token": args.name, "expires": expires},
                     session=session)
    print(secret)
    print(f"token {args.user}/{args.name} created; expires "
          f"{'never' if expires is None else iso_utc(expires)}. It is shown only this once.",
          file=sys.stderr)
    return 0


def _expiry_days(wanted: int | None, config: CloudConfig) -> int:
    limit = config.security.token_max_days
    days = limit if wanted is None else wanted
    if days < 0 or (limit and not 0 < days <= limit):
        raise accounts.AccountError(f"--expires-days must be 1..{limit} "
                                    "([security] token_max_days)")
    return days


def _token_list(args: argparse.Namespace, config: CloudConfig) -> int:
    now = now_ms()
    with database.cli_session(config) as session:
        rows: list[dict[str, Any]] = [{"user": user, "name": t.name, "state": _token_state(t, now),
                 "created": t.created_ms, "expires": t.expires_ms, "note": t.note}
                for user, t in accounts.list_tokens(session, args.user)]
    if args.json:
        print(json.dumps(rows))
        return 0
    for r in rows:
        expires = "never" if r["expires"] is None else iso_utc(r["expires"])
        print(f"{r['user']}\t{r['name']}\t{r['state']}\t{iso_utc(r['created'])}\t{expires}")
    return 0


def _token_state(token: accounts.ApiToken, now: int) -> str:
    if token.revoked_ms is not None:
        return "revoked"
    return "active" if token.usable(now) else "expired"


def _token_revoke(args: argparse.Namespace, config: CloudConfig) -> int:
    with database.cli_session(config) as session, session.begin():
        changed = accounts.revoke_token(session, args.user, args.name, now_ms())
        if changed:
            audit.record(audit.TOKEN_REVOKE, audit.cli_actor(),
                         {"user": args.user, "token": args.name}, session=session)
    print(f"token {args.user}/{args.name} {'revoked' if changed else 'already revoked'}")
    return 0


def _audit_verify(args: argparse.Namespace, config: CloudConfig) -> int:
    with database.cli_session(config) as session:
        verdict = auditlog.verify(session, args.expect_head)
    if verdict.ok:
        print(f"audit log ok: {verdict.rows} rows, head {verdict.head}")
        return 0
    print(f"audit log broken at row seq {verdict.bad_seq}: {verdict.problem} "
          f"({verdict.rows} rows before it check out)", file=sys.stderr)
    return 1


def _key_rotate(args: argparse.Namespace, config: CloudConfig) -> int:
    provider = kms.open_provider(config)
    if not isinstance(provider, kms.LocalKeyFile):
        raise kms.KeyUnavailable(f"{config.security.key_provider!r} keys are rotated by "
                                 "their own key service")
    key_id = provider.rotate()
    with database.cli_session(config) as session, session.begin():
        audit.record(audit.KEY_ROTATE, audit.cli_actor(), {"key": key_id}, session=session)
    print(f"data key {key_id} is now current ({provider.path})")
    return 0


def _password(path: Path | None) -> str:
    if path is not None:
        try:
            lines = path.read_text(encoding="utf-8").splitlines()
        except OSError as exc:
            raise accounts.AccountError(f"cannot read {path}: {exc.strerror or exc}") from None
        return lines[0] if lines else ""
    first = getpass.getpass("Password: ")
    if getpass.getpass("Again: ") != first:
        raise accounts.AccountError("the passwords differ")
    return first

