"""`tandem-cloud model` commands: register a trained version, list, show, promote, release."""

from __future__ import annotations

import argparse
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import TypeAlias

from tandem.cloud.audit import record as audit
from tandem.cloud.config import CloudConfig
from tandem.cloud.db import engine as database
from tandem.cloud.models import registry
from tandem.cloud.timestamps import now_ms

Subparsers: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"
ERRORS = (registry.ModelRegistryError,)


def add_actions(actions: Subparsers, config: argparse.ArgumentParser,
                load: Callable[[argparse.Namespace], CloudConfig]) -> None:
    """The registry's actions, added to the `model` group that cloud/cli/training.py makes."""
    register = actions.add_parser("register", parents=[config],
                                  help="register a trainer's output (model.tflite + card.json)")
    register.add_argument("directory", type=Path)
    register.add_argument("--by", default=os.environ.get("USER", "cli"),
                          help="who registers it (default: $USER)")
    register.add_argument("--chunk-bytes", type=int, default=registry.CHUNK_BYTES,
                          metavar="N", help="artefact chunk size for resumable transfer "
                                            f"(default {registry.CHUNK_BYTES})")
    register.set_defaults(handler=_register, load_config=load)
    listing = actions.add_parser("list", parents=[config], help="list versions (JSON)")
    listing.set_defaults(handler=_list, load_config=load)
    show = actions.add_parser("show", parents=[config], help="one version with its card")
    show.add_argument("version")
    show.set_defaults(handler=_show, load_config=load)
    promote = actions.add_parser("promote", parents=[config],
                                 help="promote a version (must beat the promoted one)")
    promote.add_argument("version")
    promote.add_argument("--force", action="store_true", help="promote even if it does not")
    promote.set_defaults(handler=_promote, load_config=load)
    release = actions.add_parser("release", parents=[config], help="sign a version's manifest")
    release.add_argument("version")
    release.add_argument("--rollback", action="store_true",
                         help="an operator's deliberate downgrade to an older version")
    release.set_defaults(handler=_release, load_config=load)


def _register(args: argparse.Namespace) -> int:
    config = _config(args)
    with database.cli_session(config) as session, session.begin():
        row = registry.register(session, config, args.directory, args.by, now_ms(),
                                args.chunk_bytes)
        audit.record(audit.MODEL_REGISTER, session=session,
                     detail={"version": row.version, "sha256": row.sha256})
        print(f"model {row.version} registered ({row.size} bytes, "
              f"{row.artefact_size} compressed)")
    return 0


def _list(args: argparse.Namespace) -> int:
    with database.cli_session(_config(args)) as session:
        print(json.dumps([registry.summary(r) for r in registry.versions(session)], indent=2))
    return 0


def _show(args: argparse.Namespace) -> int:
    with database.cli_session(_config(args)) as session:
        row = registry.find(session, args.version)
        if row is None:
            raise registry.ModelRegistryError(f"no model version {args.version}")
        print(json.dumps(registry.summary(row), indent=2))
    return 0


def _promote(args: argparse.Namespace) -> int:
    with database.cli_session(_config(args)) as session, session.begin():
        registry.promote(session, args.version, args.force)
        audit.record(audit.MODEL_PROMOTE, session=session,
                     detail={"version": args.version, "force": args.force})
    print(f"model {args.version} promoted")
    return 0


def _release(args: argparse.Namespace) -> int:
    config = _config(args)
    with database.cli_session(config) as session, session.begin():
        registry.sign_release(session, config, args.version, now_ms(), args.rollback)
        audit.record(audit.MODEL_RELEASE, session=session,
                     detail={"version": args.version, "rollback": args.rollback})
    print(f"model {args.version} released")
    return 0


def _config(args: argparse.Namespace) -> CloudConfig:
    config: CloudConfig = args.load_config(args)
    return config
