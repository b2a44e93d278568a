"""Live-values benchmark: a reading at the controller -> its value in GET /api/v1/devices/<id>/live.

Real processes: the cloud, the gateway polling pymodbus's simulated controller
(--units units behind one address, every --poll-ms), all units watched live.
The bench writes a new value into unit 1's `load` register and polls the live
API until it shows it; a sample runs from the write (so it includes up to one
Modbus poll before the reading, and half an API poll, --api-poll-ms, on
average) to that API answer: an upper bound of reading -> visible. Goal: p99
<= 1 s (issue 14). The cost is the live lane's signed request bytes per second (the gateway's
tandem_gw_live_bytes) with every unit watched, beside the count of devices.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import httpx
import numpy as np
from prometheus_client.parser import text_string_to_metric_families
from pymodbus.client import ModbusTcpClient

from tandem.tools.bench.alarm import PLC_MAP, _controller
from tandem.tools.site import Site, local_site
from tandem.wire.clock import now_ms

GOAL_MS = 1000.0
BUS = """
[[modbus.bus]]
name = "plc"
kind = "tcp"
host = "127.0.0.1"
tcp_port = {port}
timeout_s = 0.5
backoff_max_s = 1.0
units = [{units}]
"""


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark; print p50/p99 beside the goal, and the lane's bytes/s."""
    args = _parser().parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="tandem-live-") as tmp, \
            _controller(args.units) as port:
        (Path(tmp) / "plc.toml").write_text(PLC_MAP)
        units = ", ".join(f'{{ name = "u{i}", unit_id = {i}, map = "{Path(tmp) / "plc.toml"}", '
                          f'poll_s = {args.poll_ms / 1000} }}' for i in range(1, args.units + 1))
        site = local_site(Path(tmp) / "site", window_s=args.window,
                          gateway_extra=BUS.format(port=port, units=units))
        try:
            site.start_cloud()
            site.start_gateway(env={"TANDEM_GW_LIVE_WATCH_POLL_S": "0.5"})
            with site.cloud_client(timeout=5) as client, \
                    ModbusTcpClient("127.0.0.1", port=port) as plc:
                _watch_all(client, args.units)
                bytes0, started = _live_bytes(site), time.monotonic()
                samples = _measure(client, plc, args)
                rate = (_live_bytes(site) - bytes0) / (time.monotonic() - started)
        finally:
            site.stop_all()
    _report(samples, rate, args)
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tandem bench live",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--samples", type=int, default=200, help="values to follow")
    parser.add_argument("--units", type=int, default=10, help="Modbus units, all watched")
    parser.add_argument("--poll-ms", type=float, default=100.0, help="gateway's Modbus poll")
    parser.add_argument("--api-poll-ms", type=float, default=20.0, help="bench's API poll")
    parser.add_argument("--window", type=float, default=1.0, help="summary window, s")
    return parser


def _watch_all(client: httpx.Client, units: int, timeout: float = 90.0) -> None:
    """Watch every unit once the cloud knows it (its first summary arrived)."""
    deadline = time.monotonic() + timeout
    pending = {f"plc/u{i}" for i in range(1, units + 1)}
    while pending and time.monotonic() < deadline:
        for device in sorted(pending):
            if client.put(f"/api/v1/devices/{device}/live", json={"ttl_s": 3600}) \
                    .status_code == 200:
                pending.discard(device)
        time.sleep(0.2)  # the cloud learns devices at the summary window's pace
    if pending:
        raise RuntimeError(f"not known to the cloud after {timeout} s: {sorted(pending)}")


def _live_bytes(site: Site) -> float:
    text = httpx.get(f"http://127.0.0.1:{site.ports.metrics}/metrics", timeout=10).text
    return sum(s.value for f in text_string_to_metric_families(text) for s in f.samples
               if s.name == "tandem_gw_live_bytes_total")


def _measure(client: httpx.Client, plc: ModbusTcpClient, args: argparse.Namespace) \
        -> list[float]:
    """Write a new value each time; ms from the write to the live API showing it.

    Not from the value's `t`: every later poll of the same value is a newer
    reading and replaces `t`, which would flatter the figure; the write comes
    at most one Modbus poll before the first reading of the value.
    """
    samples = []
    for i in range(args.samples):
        value = 1000 + i % 30000
        written = now_ms()
        assert not plc.write_register(0, value, device_id=1).isError()
        samples.append(_await_value(client, float(value), args.api_poll_ms / 1000) - written)
    return samples


def _await_value(client: httpx.Client, value: float, poll_s: float,
                 timeout: float = 30.0) -> float:
    """Wall ms when the live API first shows value for unit 1's load."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        answer = client.get("/api/v1/devices/plc/u1/live")
        seen = now_ms()
        load = answer.json()["values"].get("load") if answer.status_code == 200 else None
        if load is not None and load["value"] == value:
            return seen
        time.sleep(poll_s)  # the polling interval of the measurement
    raise RuntimeError(f"value {value} not in the live API after {timeout} s")


def _report(samples: list[float], rate: float, args: argparse.Namespace) -> None:
    a = np.asarray(samples)
    p50, p99 = float(np.percentile(a, 50)), float(np.percentile(a, 99))
    print(f"values measured     : {len(a)} (Modbus poll {args.poll_ms:g} ms, API poll "
          f"{args.api_poll_ms:g} ms, {args.units} units watched)")
    print(f"live p50 / p99      : {p50:.1f} ms / {p99:.1f} ms  max {a.max():.1f} ms "
          "(write -> visible in GET /api/v1/devices/<id>/live)")
    print(f"goal p99            : {GOAL_MS:.0f} ms   ratio {p99 / GOAL_MS:.2f}   "
          f"{'OK' if p99 <= GOAL_MS else 'OVER'}")
    print(f"live lane uplink    : {rate:.0f} bytes/s for {args.units} watched devices "
          f"({rate / args.units:.0f} bytes/s each)")


if __name__ == "__main__":
    raise SystemExit(main())
