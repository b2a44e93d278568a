"""`tandem-cloud enrol`, `policy` and `sealed` commands: installer tokens, policies, sealed data."""

from __future__ import annotations

import argparse
import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeAlias

from tandem.cloud.audit import record as audit
from tandem.cloud.config import CloudConfig
from tandem.cloud.db import engine as database
from tandem.cloud.fleet import tokens as enrol_store
from tandem.cloud.ingest import sealed as sealed_store
from tandem.cloud.keys.keyfiles import KeyFileError, load_private_key, write_new_key
from tandem.cloud.policy import store as policy_store
from tandem.cloud.policy.release import PolicyFileError, load_policy_file, push
from tandem.cloud.timestamps import iso_utc, now_ms
from tandem.wire.errors import WireError
from tandem.wire.sealed import open_sealed

Subparsers: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"
ERRORS = (KeyFileError, PolicyFileError, enrol_store.EnrolTokenError, WireError)
_TTL = re.compile(r"^(\d+)([smhd]?)$")
_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


def add_commands(commands: Subparsers, config: argparse.ArgumentParser,
                 load: Callable[[argparse.Namespace], CloudConfig]) -> None:
    """Add the enrol, policy and sealed command groups; load reads the --config given."""
    enrol = commands.add_parser("enrol", help="installer tokens for gateway enrolment")
    actions = enrol.add_subparsers(dest="action", required=True, metavar="ACTION")
    token = actions.add_parser("token", parents=[config], help="print a one-time installer "
                               "token", description="Print a one-time token that lets an "
                               "installer enrol gateway NAME (tandem-gateway enrol). It is "
                               "shown once and stored only as a hash.")
    token.add_argument("--gateway", required=True, metavar="NAME")
    token.add_argument("--group", default=enrol_store.DEFAULT_GROUP,
                       help="policy group the gateway joins (default: %(default)s)")
    token.add_argument("--ttl", default="", help="validity, e.g. 30m, 1h, 2d "
                                                  "(default: [enrol] token_ttl_s)")
    token.set_defaults(handler=_token, load_config=load)

    policy = commands.add_parser("policy", help="security policies for gateway groups")
    actions = policy.add_subparsers(dest="action", required=True, metavar="ACTION")
    push_cmd = actions.add_parser("push", parents=[config], help="sign and publish a policy",
                                  description="Validate FILE (TOML or JSON), sign it with "
                                              "[policy] signing_key as the group's next "
                                              "version; its gateways fetch it.")
    push_cmd.add_argument("--group", required=True)
    push_cmd.add_argument("file", type=Path, metavar="FILE")
    push_cmd.set_defaults(handler=_push, load_config=load)
    status = actions.add_parser("status", parents=[config], help="versions and acks",
                                description="Each group's newest version, and each "
                                            "gateway's acknowledged version or refusal.")
    status.add_argument("--json", action="store_true")
    status.set_defaults(handler=_status, load_config=load)
    keygen = actions.add_parser("keygen", help="create a P-256 key file (policy or data key)")
    keygen.add_argument("--out", type=Path, required=True)
    keygen.set_defaults(handler=_keygen)

    sealed = commands.add_parser("sealed", help="fields sealed at the edge")
    actions = sealed.add_subparsers(dest="action", required=True, metavar="ACTION")
    show = actions.add_parser("show", parents=[config], help="decrypt sealed records",
                              description="Print sealed records as JSON lines, opened with "
                                          "[policy] data_key.")
    show.add_argument("--gateway")
    show.add_argument("--limit", type=int, default=1000)
    show.set_defaults(handler=_show, load_config=load)


def _token(args: argparse.Namespace) -> int:
    config = _config(args)
    ttl = _ttl(args.ttl) if args.ttl else config.enrol.token_ttl_s
    with database.cli_session(config) as session, session.begin():
        secret = enrol_store.create_token(session, args.gateway, args.group, ttl, now_ms())
        audit.record("enrol.token", session=session, detail={
            "gateway": args.gateway, "group": args.group, "ttl_s": ttl})
    print(secret)
    return 0


def _push(args: argparse.Namespace) -> int:
    config = _config(args)
    doc = load_policy_file(args.file)
    with database.cli_session(config) as session, session.begin():
        release = push(session, config, args.group, doc, now_ms())
        audit.record(audit.POLICY_PUSH, session=session, detail={
            "group": args.group, "version": release.version, "file": str(args.file)})
    print(f"policy {args.group} v{release.version} published")
    return 0


def _status(args: argparse.Namespace) -> int:
    with database.cli_session(_config(args)) as session:
        groups = [{"group": g.group, "version": g.version, "issued": iso_utc(g.issued_ms)}
                  for g in policy_store.groups(session)]
        acks = [{"gateway": a.gateway, "group": a.group, "version": a.version, "ok": a.ok,
                 "reason": a.reason, "at": iso_utc(a.acked_ms)} for a in policy_store.acks(session)]
    if args.json:
        print(json.dumps({"groups": groups, "gateways": acks}))
        return 0
    for g in groups:
        print(f"group {g['group']}\tv{g['version']}\t{g['issued']}")
    for a in acks:
        state = "applied" if a["ok"] else f"REFUSED ({a['reason']})"
        print(f"gateway {a['gateway']}\t{a['group']}\tv{a['version']}\t{state}\t{a['at']}")
    return 0


def _keygen(args: argparse.Namespace) -> int:
    write_new_key(args.out)
    print(f"wrote {args.out} (mode 0600)")
    return 0


def _show(args: argparse.Namespace) -> int:
    config = _config(args)
    if config.policy.data_key is None:
        raise KeyFileError("set [policy] data_key to open sealed records")
    key = load_private_key(config.policy.data_key, config.policy.passphrase_env,
                           "policy.data_key")
    with database.cli_session(config) as session:
        rows = sealed_store.read(session, args.gateway, args.limit)
    for gateway, record in rows:
        hidden: dict[str, Any] = open_sealed(record, key)
        print(json.dumps({"gateway": gateway, "device": record.device, "of": record.of,
                          "name": record.name, "t": record.t_ms, **hidden}))
    return 0


def _ttl(text: str) -> int:
    match = _TTL.match(text.strip())
    if not match:
        raise enrol_store.EnrolTokenError(f"ttl {text!r}: use e.g. 900, 30m, 1h, 2d")
    return int(match.group(1)) * _UNITS[match.group(2)]


def _config(args: argparse.Namespace) -> CloudConfig:
    config: CloudConfig = args.load_config(args)
    return config

