"""`tandem-gateway installer-password`: set the installer page's password (read from stdin)."""

from __future__ import annotations

import argparse
import getpass
import sys

from tandem.gateway.cli.security import Subparsers
from tandem.gateway.config import GatewayConfig
from tandem.gateway.installer.password import PasswordError, set_password

COMMANDS = ("installer-password",)


def add_commands(sub: Subparsers,
                 config: argparse.ArgumentParser) -> None:
    """Register the installer commands."""
    text = "set the installer page's password (asked on a terminal, else read from stdin)"
    sub.add_parser("installer-password", parents=[config], help=text, description=text)


def run(args: argparse.Namespace, config: GatewayConfig) -> int:
    """Ask for the password (twice on a terminal) and store its scrypt hash."""
    if sys.stdin.isatty():
        password = getpass.getpass("installer password: ")
        if getpass.getpass("again: ") != password:
            print("tandem-gateway: the passwords differ", file=sys.stderr)
            return 2
    else:
        password = sys.stdin.readline().rstrip("\n")
    try:
        path = set_password(config.gateway.data_dir, password)
    except PasswordError as exc:
        print(f"tandem-gateway: {exc}", file=sys.stderr)
        return 2
    print(f"installer password set ({path}); the running daemon uses it for the next login")
    return 0
