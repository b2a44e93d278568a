"""The heap a virtual node gets: an ESP32's data budget plus its code as this port loads it.

On an ESP32 the firmware's modules are frozen into flash, so their bytecode,
function objects and names cost no heap. The MicroPython unix port cannot
freeze them (the PyPI binary has neither our modules nor ROMFS) and keeps them
in the GC heap at 8-byte pointers. A node given a literal `-X heapsize=64K`
there runs with far less room for data than a board has, and its DTLS
handshake can fail with ENOMEM (seen in the three-gateway soak). Virtual nodes
therefore get DATA_BUDGET for their data plus the code of every module of
their bundle, measured once per bundle in a separate process and cached beside
it. tests/firmware/test_heap_budget.py holds the firmware to that data budget.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
from pathlib import Path

DATA_BUDGET = 64 * 1024
# Read once at boot and unloaded; their names stay interned and are counted as data.
BOOT_ONLY = frozenset({"config", "config_sensing", "modbus_config"})
_CACHE = "code_heap.json"
# Run with `-c`: imports the named modules from the bundle and prints what they hold.
_MEASURE = """
import gc, sys
sys.path.insert(0, {directory!r})
gc.collect()
before = gc.mem_alloc()
for name in {modules!r}:
    __import__(name)
gc.collect()
print(gc.mem_alloc() - before)
"""


def resident_modules(bundle: Path) -> list[str]:
    """Every module of the bundle a running node keeps loaded, and MicroPython's ssl."""
    return sorted({"ssl"} | {p.stem for p in bundle.glob("*.mpy")} - BOOT_ONLY)


def code_heap(bundle: Path, binary: str, modules: list[str] | None = None) -> int:
    """Bytes the modules (default: every resident one) occupy in the GC heap once loaded."""
    script = _MEASURE.format(directory=str(bundle),
                             modules=modules if modules is not None else resident_modules(bundle))
    out = subprocess.run([binary, "-X", "heapsize=2M", "-c", script], capture_output=True,
                         text=True, timeout=60, check=True).stdout
    return int(out.strip().splitlines()[-1])


def node_heap(bundle: Path, binary: str) -> str:
    """`-X heapsize=` for a node running bundle: DATA_BUDGET plus the bundle's code (cached)."""
    cache = bundle / _CACHE
    try:
        code = int(json.loads(cache.read_text())["bytes"])
    except (OSError, ValueError, KeyError):
        code = code_heap(bundle, binary)
        with contextlib.suppress(OSError):  # a read-only bundle is measured again next time
            cache.write_text(json.dumps({"bytes": code}))
    return f"{(DATA_BUDGET + code) // 1024 + 1}K"
