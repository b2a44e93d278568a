"""Random and half-valid frames into the slave's parser in MicroPython: it never crashes,
and whatever it answers carries a good CRC."""

from __future__ import annotations

import json

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tandem.tools.modbus_rig import rtu_frame
from tests.nodeproc import REPO, run_script

SCRIPT = REPO / "tests" / "firmware" / "modbus_fuzz_main.py"
FUNCTIONS = (1, 2, 3, 4, 5, 6, 15, 16, 0, 7, 0x2B, 0x80, 0xFF)

random_bytes = st.binary(min_size=0, max_size=300)
# Frames that pass the CRC check, so the parser's inner checks are reached.
framed = st.builds(
    lambda unit, fc, body: rtu_frame(bytes([unit, fc]) + body),
    st.sampled_from((0, 1, 1, 1, 2)), st.sampled_from(FUNCTIONS), st.binary(max_size=260))
# Well-formed headers with hostile addresses, quantities and byte counts.
headed = st.builds(
    lambda fc, start, qty, count, tail: rtu_frame(
        bytes([1, fc]) + start.to_bytes(2, "big") + qty.to_bytes(2, "big")
        + (bytes([count]) + tail if fc in (15, 16) else b"")),
    st.sampled_from((1, 2, 3, 4, 5, 6, 15, 16)), st.integers(0, 0xFFFF),
    st.integers(0, 0xFFFF), st.integers(0, 255), st.binary(max_size=250))
bursts = st.lists(st.one_of(random_bytes, framed, headed), min_size=1, max_size=300)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(bursts)
def test_parser_never_crashes(frames: list[bytes]) -> None:
    stdin = "".join(f.hex() + "\n" for f in frames if f)
    result = run_script(SCRIPT, stdin)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    done = json.loads(result.stdout.strip().splitlines()[-1])
    assert done["ev"] == "done" and done["bad"] == 0
