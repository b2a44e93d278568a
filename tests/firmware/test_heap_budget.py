"""The whole firmware within an ESP32's heap budget, code and data weighed apart.

On an ESP32 the firmware's modules are frozen into flash: their bytecode,
function objects and names (qstrs) cost no heap. The unix port used here
cannot freeze them (the PyPI binary has neither our modules nor ROMFS), so
every module is loaded into the GC heap, at 8-byte pointers. The node that
only reports (DTLS + RAM outbox) runs at the literal `-X heapsize=64K`
(test_node_dtls); the whole firmware carries ~78 KB of code on this port, so
here it gets 64 KB for its data plus its code, measured, not guessed: the
same bundle's modules, loaded in a separate process (tools/nodeheap.py, which
sizes every virtual node's heap the same way).
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from pymodbus import FramerType
from pymodbus.client import ModbusSerialClient

from tandem.tools.modbus_rig import REGISTERS_JSON
from tandem.tools.nodeheap import DATA_BUDGET, code_heap, resident_modules
from tandem.tools.pki import Identity
from tandem.wire.report import decode_report
from tests.firmware.conftest import PeerFactory
from tests.firmware.vib_peer import VibrationGateway
from tests.modbus_rig import PtyPair
from tests.nodeproc import NodeProcess, firmware_main, micropython_binary, write_node_config

pytestmark = pytest.mark.timeout(180)

WHOLE_FIRMWARE = "accel features, DTLS, Modbus RTU slave, flash spill, commands, raw uploads"
PERIOD_MS = 100
WINDOWS = 600  # 60 s of scenario time at one window per period


def test_the_whole_firmware_runs_60_s_in_a_64k_data_budget(
        tmp_path: Path, node_id: Identity, start_peer: PeerFactory,
        nodes: list[NodeProcess]) -> None:
    bundle = firmware_main().parent
    modules = resident_modules(bundle)
    code = code_heap(bundle, micropython_binary(), modules)
    gw = VibrationGateway(commands=[{"id": 1, "raw": True, "relay": True}])
    peer = start_peer(gw)
    with PtyPair(tmp_path) as pty:
        cfg = write_node_config(
            tmp_path / "node", node_id, peer.port, period_ms=PERIOD_MS, max_reports=WINDOWS,
            log="warn", outbox=16, stats_every=100,
            sensor={"model": "accel", "rate_hz": 800, "samples": 48,
                    "scenario": "bearing_fault", "seed": 9},
            modbus={"port": str(pty.a), "unit": 5, "map": str(REGISTERS_JSON)},
            spill={"max_bytes": 16384}, commands={"poll_ms": 1000},
            raw={"enabled": True, "block_szx": 4},
            coap={"ack_timeout_ms": 300, "max_retransmit": 2},
            link={"backoff_min_ms": 50, "backoff_max_ms": 400, "handshake_timeout_ms": 3000})
        heap = f"{(DATA_BUDGET + code) // 1024 + 1}K"
        node = NodeProcess(cfg, heap=heap)
        nodes.append(node.start())
        polls = _poll_modbus_until_exit(pty, node)
        assert node.wait_exit(30) == 0, node.output
    done = node.wait_for("exit")
    assert set(done["modules"]) - {"__main__"} == set(modules), "measured what it loaded"
    assert "MemoryError" not in node.output
    seqs = [decode_report(p).seq for p in gw.reports]
    assert done["reports"] == WINDOWS and sorted(set(seqs)) == list(range(1, WINDOWS + 1))
    assert done["raw_sent"] == 1 and done["commands"] == 1 and polls >= 30
    data = done["live_heap"] - code
    print(f"\nwhole firmware, {WINDOWS} windows of {PERIOD_MS} ms with "
          f"{WHOLE_FIRMWARE}; heap {heap}: code {code} B (frozen on a board), "
          f"live {done['live_heap']} B, data {data} B, peak before a collection "
          f"{done['peak_heap']} B; jitter_us {done['jitter_us']}; modbus polls {polls}")
    assert data < DATA_BUDGET // 2  # the data half of the heap, with room to fragment


def _poll_modbus_until_exit(pty: PtyPair, node: NodeProcess) -> int:
    """A master reads the live registers about once a second while the node runs."""
    node.wait_for("boot", timeout=30)
    client = ModbusSerialClient(str(pty.b), framer=FramerType.RTU, timeout=3, retries=3)
    assert client.connect()
    polls = 0
    try:
        while node.returncode is None:
            reply = client.read_input_registers(0, count=9, device_id=5)
            if node.returncode is not None:
                break
            assert not reply.isError(), reply
            polls += 1
            time.sleep(1.0)  # a master's poll interval, not a wait for a result
    finally:
        client.close()
    return polls
