"""`tandem-gateway`: run the edge gateway daemon and inspect its state."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from pathlib import Path

from tandem.gateway import preflight
from tandem.gateway.cli import installer as installer_cli
from tandem.gateway.cli import quarantine as quarantine_cli
from tandem.gateway.cli import security as security_cli
from tandem.gateway.config import GatewayConfig, load_config
from tandem.gateway.identity.keystore import KeyStoreError
from tandem.gateway.runtime import Gateway
from tandem.gateway.sd_notify import SystemdNotifier
from tandem.gateway.store.database import DATABASE_FILE, GatewayDatabase
from tandem.gateway.store.migrations import SchemaError
from tandem.gateway.store.outbox import Outbox
from tandem.gateway.supervisor import periodic

log = logging.getLogger("tandem.gateway")


def main(argv: list[str] | None = None) -> int:
    """Entry point of the tandem-gateway command."""
    parser = _parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), stream=sys.stdout,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        config = load_config(args.config)
        if args.command in ("check-config", "run"):
            preflight.check(config)
    except preflight.STARTUP_ERRORS as exc:
        print(f"tandem-gateway: {exc}", file=sys.stderr)
        return 2
    if args.command == "check-config":
        print(f"{args.config}: OK (gateway {config.gateway.id})")
        return 0
    try:
        return _dispatch(args, config)
    except SchemaError as exc:  # a database from a newer release, or a failed schema step
        print(f"tandem-gateway: {exc}", file=sys.stderr)
        return 1


def _dispatch(args: argparse.Namespace, config: GatewayConfig) -> int:
    if args.command == "outbox":
        return _outbox_status(config.gateway.data_dir)
    if args.command in security_cli.COMMANDS:
        return security_cli.run(args, config)
    if args.command in quarantine_cli.COMMANDS:
        return quarantine_cli.run(args, config)
    if args.command in installer_cli.COMMANDS:
        return installer_cli.run(args, config)
    return asyncio.run(_run(config))


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tandem-gateway", description="Tandem edge gateway: device access, local "
        "processing, durable store-and-forward to the cloud.")
    parser.add_argument("--log-level", default="info",
                        choices=["debug", "info", "warning", "error"])
    sub = parser.add_subparsers(dest="command", required=True)
    for name, text in (("run", "run the gateway daemon until SIGINT/SIGTERM"),
                       ("check-config", "validate a configuration file and exit"),
                       ("outbox", "show what waits in the outbox")):
        command = sub.add_parser(name, help=text, description=text)
        command.add_argument("--config", "-c", type=Path, required=True,
                             help="gateway TOML configuration file")
    config = argparse.ArgumentParser(add_help=False)
    config.add_argument("--config", "-c", type=Path, required=True,
                        help="gateway TOML configuration file")
    security_cli.add_commands(sub, config)
    quarantine_cli.add_commands(sub, config)
    installer_cli.add_commands(sub, config)
    return parser


async def _run(config: GatewayConfig) -> int:
    """Serve until SIGTERM/SIGINT (exit 0) or until a task cannot recover (exit 1)."""
    notifier = SystemdNotifier()
    try:
        gateway = Gateway(config)
    except (*preflight.STARTUP_ERRORS, KeyStoreError) as exc:
        print(f"tandem-gateway: cannot start: {exc}", file=sys.stderr)
        return 2
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await gateway.start()
    except (*preflight.STARTUP_ERRORS, KeyStoreError) as exc:
        print(f"tandem-gateway: cannot start: {exc}", file=sys.stderr)
        await gateway.stop()
        return 2
    scheme = "coap" if config.coap.insecure_plain_coap else "coaps"
    print(f"tandem-gateway {config.gateway.id} listening on {scheme}://{config.coap.host}:"
          f"{gateway.coap_port} metrics on http://{config.metrics.host}:{gateway.metrics_port}"
          "/metrics", flush=True)
    notifier.notify("READY=1")
    failed = gateway.supervisor.failed
    watchdog = asyncio.create_task(_watchdog(notifier, gateway, stop))
    waits = [asyncio.create_task(stop.wait()), asyncio.create_task(failed.wait())]
    await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
    for waiting in waits:
        waiting.cancel()
    notifier.notify("STOPPING=1")
    code = 0 if stop.is_set() else 1
    if code:
        log.critical("a gateway task cannot recover: stopping with exit status 1")
    log.info("stopping: storing open windows")
    stop.set()
    await watchdog
    await gateway.stop()
    print(f"tandem-gateway {config.gateway.id} stopped", flush=True)
    return code


async def _watchdog(notifier: SystemdNotifier, gateway: Gateway, stop: asyncio.Event) -> None:
    """WATCHDOG=1 while the supervisor says live; silence lets systemd restart a hung daemon."""
    if not notifier.enabled or not notifier.watchdog_interval_s:
        return

    async def ping() -> None:
        if gateway.supervisor.live:
            notifier.notify("WATCHDOG=1")

    await periodic(stop, notifier.watchdog_interval_s, ping)


def _outbox_status(data_dir: Path) -> int:
    path = data_dir / DATABASE_FILE
    if not path.exists():
        print(f"no outbox at {path}")
        return 1
    database = GatewayDatabase(path)
    records, batches = database.call_sync(Outbox(database).depth_sync)
    database.close()
    print(f"outbox {path}: {records} records waiting, {batches} batches awaiting confirmation")
    return 0


if __name__ == "__main__":
    sys.exit(main())
