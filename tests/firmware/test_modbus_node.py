"""The whole node (DTLS reports + Modbus RTU slave) in MicroPython with a 64 KB heap.

The slave is one more step of the node's poll loop: a master on the pty must
see live readings while reports keep flowing to the DTLS peer, and writes to
holding registers reach the node's schedule.
"""

from __future__ import annotations

import struct
from pathlib import Path
from types import ModuleType

import pytest
from pymodbus import FramerType
from pymodbus.client import ModbusSerialClient

from tandem.tools.modbus_rig import REGISTERS_JSON
from tandem.tools.pki import Identity
from tests.firmware.conftest import PeerFactory
from tests.modbus_rig import PtyPair
from tests.nodeproc import NodeProcess, write_node_config

pytestmark = pytest.mark.timeout(90)

# Not 64K: on the unix port every module's code is in the GC heap (on the
# ESP32 it is frozen into flash). Reports + slave keep ~45 KB of code and
# ~17 KB of data live; at 80K the heap is too fragmented for a 1.3 KB
# datagram. test_heap_budget weighs code and data apart.
HEAP = "96K"


def _f32(hi: int, lo: int) -> float:
    return float(struct.unpack(">f", struct.pack(">HH", hi, lo))[0])


def test_node_serves_modbus_while_reporting(tmp_path: Path, node_id: Identity,
                                            start_peer: PeerFactory, sim: ModuleType) -> None:
    peer = start_peer()
    with PtyPair(tmp_path) as pty:
        cfg = write_node_config(
            tmp_path / "node", node_id, peer.port, period_ms=100, max_reports=40,
            sensor={"scenario": "bearing_fault", "seed": 5},
            modbus={"port": str(pty.a), "unit": 3, "map": str(REGISTERS_JSON)})
        with NodeProcess(cfg, heap=HEAP) as node:
            node.wait_for("connected")
            # Generous timeout: on a loaded CI machine the node may be busy
            # with a DTLS record when a request arrives.
            client = ModbusSerialClient(str(pty.b), framer=FramerType.RTU, timeout=3,
                                        retries=3)
            assert client.connect()
            try:
                for _ in range(20):
                    w = client.read_input_registers(0, count=9, device_id=3).registers
                    n = w[7] | w[8] << 16
                    expected = [0.0, 0.0]
                    sim.sample(5, "bearing_fault", n, expected)
                    assert _f32(w[0], w[1]) == pytest.approx(expected[0], rel=1e-6)
                    assert _f32(w[3], w[2]) == pytest.approx(expected[1], rel=1e-6, abs=1e-9)
                bits = client.read_discrete_inputs(0, count=4, device_id=3).bits
                assert bits[3] is True  # link_up: the DTLS session is up
                assert not client.write_registers(0, [0, 50], device_id=3).isError()
                assert not client.write_coil(0, True, device_id=3).isError()
                assert client.read_discrete_inputs(2, count=1, device_id=3).bits[0] is True
            finally:
                client.close()
            node.wait_for("modbus_write", point="period_ms", value=50)
            assert node.wait_exit(30) == 0, node.output
            done = node.wait_for("exit")
    print(f"node+modbus: peak_heap={done['peak_heap']} of {done['heap_size']}")
    assert "MemoryError" not in node.output and done["peak_heap"] < done["heap_size"]
    assert done["reports"] == 40
