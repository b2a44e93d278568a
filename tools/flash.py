"""`tandem flash`: erase and write a MicroPython image, then copy the bundle and the node's files.

The plan is a list of command lines (esptool, then mpremote) computed from
the board definition, so --dry-run prints exactly what would run and tests
check it without hardware.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from tandem.tools.boards import Board

NODE_FILES = ("node.json", "cert.der", "key.der", "ca.der")
_MPREMOTE_TRIES = 5  # the board reboots (and formats its filesystem) after flashing
_MPREMOTE_RETRY_S = 2.0


class FlashError(Exception):
    """The plan cannot be made or a step failed."""


@dataclass(frozen=True)
class FlashJob:
    """What to put on one board."""

    board: Board
    port: str
    image: Path | None  # None: keep the MicroPython already on the board
    bundle: Path
    node_dir: Path | None = None
    baud: int | None = None
    erase: bool = True


def check_bundle(bundle: Path, board: Board) -> list[Path]:
    """Files of a bundle built for this board (manifest order)."""
    manifest_path = bundle / "manifest.json"
    try:
        manifest = json.loads(manifest_path.read_text())
    except (OSError, ValueError) as exc:
        raise FlashError(f"{bundle}: not a bundle from `tandem build` ({exc})") from None
    if manifest.get("board", {}).get("name") != board.name:
        raise FlashError(f"{bundle} was built for board {manifest.get('board', {}).get('name')!r}"
                         f", not {board.name!r}")
    return [*(bundle / f["path"] for f in manifest["files"]), manifest_path]


def node_files(node_dir: Path) -> list[Path]:
    """The node's config and DER files (from `tandem provision`)."""
    files = [node_dir / name for name in NODE_FILES]
    missing = [f.name for f in files if not f.is_file()]
    if missing:
        raise FlashError(f"{node_dir}: missing {', '.join(missing)} (run tandem provision)")
    return files


def plan(job: FlashJob) -> list[list[str]]:
    """The command lines, in order."""
    if job.board.flash is None:
        raise FlashError(f"board {job.board.name} has no [flash] table: nothing to flash")
    spec = job.board.flash
    esptool = ["esptool", "--chip", spec.chip, "--port", job.port,
               "--baud", str(job.baud or spec.baud)]
    steps: list[list[str]] = []
    if job.image is not None:
        if job.erase:
            steps.append([*esptool, "erase-flash"])
        steps.append([*esptool, "write-flash", "-z", hex(spec.image_offset), str(job.image)])
    mpremote = ["mpremote", "connect", job.port]
    steps.append([*mpremote, "fs", "cp", *map(str, check_bundle(job.bundle, job.board)), ":"])
    if job.node_dir is not None:
        steps.append([*mpremote, "fs", "cp", *map(str, node_files(job.node_dir)), ":"])
    steps.append([*mpremote, "reset"])
    return steps


def resolve_program(name: str) -> str:
    """A tool installed next to this Python (the venv), else on PATH."""
    found = shutil.which(name, path=str(Path(sys.executable).parent)) or shutil.which(name)
    if not found:
        raise FlashError(f"{name} not found: pip install esptool mpremote (the tools extra)")
    return found


def run(steps: list[list[str]], on_step: Callable[[list[str]], None] | None = None) -> None:
    """Run each step; mpremote steps are retried while the board reboots."""
    for argv in steps:
        if on_step:
            on_step(argv)
        tries = _MPREMOTE_TRIES if argv[0] == "mpremote" else 1
        for attempt in range(1, tries + 1):
            done = subprocess.run([resolve_program(argv[0]), *argv[1:]], check=False)
            if done.returncode == 0:
                break
            if attempt == tries:
                raise FlashError(f"{' '.join(argv[:4])} ... failed (exit {done.returncode})")
            time.sleep(_MPREMOTE_RETRY_S)
