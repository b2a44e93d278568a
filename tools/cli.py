"""`tandem`: the engineer's and operator's tools (PKI, demo, node build/flash/provision/monitor)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from tandem.tools.pki import PKIError, Role, SiteCA
from tandem.tools.stopsignals import Stopped, stop_on_signals


def main(argv: list[str] | None = None) -> int:
    """Entry point of the tandem command."""
    args = _parser().parse_args(argv)
    try:
        with stop_on_signals():  # SIGTERM stops started processes as Ctrl-C does
            return _run(args)
    except Stopped as stop:
        print(f"tandem: {stop}; the processes it started are stopped", file=sys.stderr)
        return stop.exit_code


def _run(args: argparse.Namespace) -> int:
    if getattr(args, "node_command", False):
        from tandem.tools.node_commands import run_guarded

        return run_guarded(args.handler, args)
    try:
        return int(args.handler(args))
    except PKIError as exc:
        print(f"tandem: {exc}", file=sys.stderr)
        return 2


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tandem", description="Tandem engineering tools.")
    sub = parser.add_subparsers(dest="command", required=True)
    _add_pki(sub)
    _add_demo(sub)
    _add_bench(sub)
    from tandem.tools.node_commands import add_commands

    add_commands(sub)
    return parser


def _add_pki(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    pki = sub.add_parser("pki", help="site CA and certificates",
                         description="Create a site CA and issue gateway, device and server "
                         "certificates (DER copies for devices).")
    pki_sub = pki.add_subparsers(dest="pki_command", required=True)
    init = pki_sub.add_parser("init", help="create the site CA", description="create the site CA")
    init.add_argument("--dir", type=Path, required=True, help="PKI directory")
    init.add_argument("--site", required=True, help="site name (certificate organisation)")
    init.set_defaults(handler=_pki_init)
    issue = pki_sub.add_parser("issue", help="issue a certificate",
                               description="issue a certificate signed by the site CA")
    issue.add_argument("--dir", type=Path, required=True, help="PKI directory")
    issue.add_argument("--role", choices=[r.value for r in Role], required=True)
    issue.add_argument("--name", required=True, help="identity (certificate CN)")
    issue.add_argument("--host", action="append", default=[],
                       help="extra DNS name or IP address (repeatable)")
    issue.add_argument("--days", type=int, default=825, help="validity in days")
    issue.set_defaults(handler=_pki_issue)


def _pki_init(args: argparse.Namespace) -> int:
    ca = SiteCA.create(args.dir, args.site)
    print(f"site CA created: {ca.cert_pem_path} (key {args.dir / 'ca.key.pem'}, mode 600)")
    return 0


def _pki_issue(args: argparse.Namespace) -> int:
    ca = SiteCA.load(args.dir)
    identity = ca.issue(args.name, Role(args.role), tuple(args.host), args.days)
    print(f"{identity.role.value} {identity.name}: {identity.directory}")
    return 0


def _add_demo(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    demo = sub.add_parser("demo", help="run cloud + gateway + three nodes locally",
                          description="Run the whole system on embedded defaults: a cloud, one "
                          "gateway and three virtual sensor nodes (real MicroPython). Ctrl-C "
                          "stops everything.")
    demo.add_argument("--workdir", type=Path, default=Path(".demo"),
                      help="where PKI, configs and data go (recreated each run)")
    demo.add_argument("--nodes", type=int, default=3, help="number of virtual nodes")
    demo.add_argument("--cloud-port", type=int, default=8443)
    demo.add_argument("--coap-port", type=int, default=5684)
    demo.add_argument("--metrics-port", type=int, default=9464)
    demo.add_argument("--window", type=float, default=5.0, help="summary window in seconds")
    demo.add_argument("--duration", type=float, default=0,
                      help="stop after this many seconds (0: run until Ctrl-C)")
    demo.set_defaults(handler=_demo)


def _demo(args: argparse.Namespace) -> int:
    from tandem.tools.demo import DemoOptions, run_demo

    return run_demo(DemoOptions(workdir=args.workdir, nodes=args.nodes,
                                cloud_port=args.cloud_port, coap_port=args.coap_port,
                                metrics_port=args.metrics_port, window_s=args.window,
                                duration_s=args.duration))


# -- bench: each benchmark's own main, its options passed through ----------------------

_BENCHES = {"reflex": "tandem.tools.bench.reflex", "modbus": "tandem.tools.bench.modbus",
            "ingest": "tandem.tools.bench.ingest", "coap": "tandem.tools.bench.coap",
            "drain": "tandem.tools.bench.drain", "bytes": "tandem.tools.bench.bytes",
            "latency": "tandem.tools.bench.latency",
            "catchup": "tandem.tools.bench.catchup",
            "alarm": "tandem.tools.bench.alarm",
            "live": "tandem.tools.bench.live",
            "training": "tandem.tools.bench.training",
            "modelloop": "tandem.tools.bench.modelloop",
            "rollout": "tandem.tools.bench.rollout",
            "schedule": "tandem.tools.bench.schedule",
            "offload": "tandem.tools.bench.offload",
            "surge": "tandem.tools.bench.surge",
            "modbus-fleet": "tandem.tools.bench.modbus_fleet",
            "node": "tandem.tools.bench.node",
            "console": "tandem.tools.bench.console",
            "installer": "tandem.tools.bench.installer",
            "fleet-ingest": "tandem.tools.bench.fleetingest"}


def _add_bench(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    bench = sub.add_parser("bench", help="run a benchmark (" + ", ".join(sorted(_BENCHES)) + ")",
                           description="Run one benchmark; options after its name go to it "
                           "(e.g. `tandem bench coap --peers 500 --soak 10`, "
                           "`tandem bench reflex -- --help`).")
    bench.add_argument("which", choices=sorted(_BENCHES))
    bench.add_argument("options", nargs=argparse.REMAINDER, help="the benchmark's own options")
    bench.set_defaults(handler=_bench)


def _bench(args: argparse.Namespace) -> int:
    import importlib

    options = list(args.options)
    if options[:1] == ["--"]:
        options = options[1:]
    return int(importlib.import_module(_BENCHES[args.which]).main(options))


if __name__ == "__main__":
    sys.exit(main())
