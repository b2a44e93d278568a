"""Benchmark of device ingest: many DTLS peers posting reports to a real gateway process.

    python -m tools.bench_coap --peers 500 --channels 8 --seconds 30
    python -m tools.bench_coap --peers 500 --soak 10      # RSS before/after 10 minutes

A site CA in a temp dir issues the gateway's and every peer's certificate.
The gateway is `tandem-gateway run` (no uplink, metrics off) as its own
process. The load generator speaks what a node speaks: DTLS 1.2 with X.509
(pyOpenSSL over memory BIOs), then CON POST /r with a CBOR report of
`--channels` readings, one request in flight per peer (stop-and-wait, as a
node does); peers are multiplexed on asyncio in `--workers` processes.

Measured: handshakes/s (all peers, `--handshake-concurrency` at a time),
then over the timed window: 2.04 replies/s, readings/s (replies x
channels), the CoAP round trip (send -> 2.04 decrypted, in the generator,
so it includes the generator's own queueing), the gateway's CPU time over
the window (all its threads, from /proc/<pid>/stat) and its ratio to one
core, and the gateway's RSS (VmRSS) before and after.

Where the time goes (py-spy on the gateway's main thread, 500 peers, 8
channels): aiocoap's message manager, pipes, site and message copies 41 %,
DTLS (pyOpenSSL, socket send) 29 %, asyncio 14 %, windows and summaries 6 %,
report decoding 4 %, ingress 4 %.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import multiprocessing
import os
import secrets
import shutil
import socket
import struct
import sys
import tempfile
import time
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path
from typing import cast

import numpy as np
from OpenSSL import SSL

from tandem.gateway.access.records import pack_datagrams
from tandem.tools.pki import Identity, Role, SiteCA
from tandem.tools.procs import Child
from tandem.wire.clock import now_ms
from tandem.wire.report import Report, encode_report

_POST, _CHANGED, _CON = 0x02, 0x44, 0
_OPTIONS = b"\xb1r\x11\x3c"  # Uri-Path "r", Content-Format 60 (application/cbor)
_MAX_RTT_SAMPLES = 100_000
_TICK = os.sysconf("SC_CLK_TCK")


def coap_post(mid: int, token: bytes, payload: bytes) -> bytes:
    """A CON POST /r as a node sends it (hand-encoded: the generator must be cheap)."""
    return bytes([0x40 | len(token), _POST, mid >> 8, mid & 0xFF]) + token + _OPTIONS + \
        b"\xff" + payload


class Peer(asyncio.DatagramProtocol):
    """One simulated node: a DTLS client over memory BIOs on its own UDP socket."""

    def __init__(self, identity: Identity, ca_pem: Path, channels: int) -> None:
        ctx = SSL.Context(SSL.DTLS_CLIENT_METHOD)
        ctx.use_certificate_file(str(identity.cert_pem))
        ctx.use_privatekey_file(str(identity.key_pem))
        ctx.load_verify_locations(str(ca_pem))
        ctx.set_verify(SSL.VERIFY_PEER, lambda conn, cert, err, depth, ok: bool(ok))
        ctx.set_options(SSL.OP_NO_QUERY_MTU)
        self.conn = SSL.Connection(ctx, None)
        self.conn.set_connect_state()
        self.conn.set_ciphertext_mtu(1200)
        self.names = [f"ch{i:02d}" for i in range(channels)]
        self.boot = secrets.randbelow(1 << 32)
        self.seq = 0
        self.mid = secrets.randbelow(1 << 16)
        self.transport: asyncio.DatagramTransport | None = None
        self.handshaken: asyncio.Future[None] | None = None
        self.reply: asyncio.Future[int] | None = None
        self.token = b""
        self._timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # the selector loop's datagram transport does not subclass DatagramTransport
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: object) -> None:
        self.conn.bio_write(data)
        if self.handshaken is not None and not self.handshaken.done():
            self._handshake_step()
            return
        while True:
            try:
                plain = self.conn.recv(2048)
            except SSL.WantReadError:
                break
            except SSL.Error:
                return
            self._coap(plain)

    def _coap(self, plain: bytes) -> None:
        """Take a reply: piggybacked on the ACK, or separate (after an empty ACK) by token."""
        if len(plain) < 4 or self.reply is None or self.reply.done():
            return
        kind, code, mid = (plain[0] >> 4) & 3, plain[1], plain[2] << 8 | plain[3]
        if kind == _CON:  # a separate response: acknowledge it
            self.conn.send(bytes([0x60, 0, plain[2], plain[3]]))
            self._flush()
        elif mid != self.mid or code == 0:
            return  # not ours, or the empty ACK that announces a separate response
        if plain[4:4 + (plain[0] & 0x0F)] == self.token:
            self.reply.set_result(code)

    async def handshake(self, timeout: float = 30.0) -> None:
        """Complete the DTLS handshake, retransmitting as OpenSSL asks."""
        self.handshaken = asyncio.get_running_loop().create_future()
        self._handshake_step()
        try:
            await asyncio.wait_for(self.handshaken, timeout)
        finally:
            if self._timer is not None:
                self._timer.cancel()

    async def post(self, timeout: float = 5.0) -> int:
        """Send the next report, await its reply; the response code."""
        self.seq += 1
        self.mid = (self.mid + 1) & 0xFFFF
        values = {name: 20.0 + (self.seq % 97) * 0.25 + i for i, name in enumerate(self.names)}
        payload = encode_report(Report(self.seq, self.boot, now_ms(), values))
        self.token = struct.pack(">I", self.seq)
        datagram = coap_post(self.mid, self.token, payload)
        self.reply = asyncio.get_running_loop().create_future()
        for attempt_timeout in (2.0, timeout):  # one CoAP retransmission, same message ID
            self.conn.send(datagram)
            self._flush()
            with contextlib.suppress(TimeoutError):
                return await asyncio.wait_for(asyncio.shield(self.reply), attempt_timeout)
        raise TimeoutError("no reply")

    def _handshake_step(self) -> None:
        assert self.handshaken is not None
        try:
            self.conn.do_handshake()
        except SSL.WantReadError:
            self._flush()
            self._arm_timer()
            return
        except SSL.Error as exc:
            self._flush()
            if not self.handshaken.done():
                self.handshaken.set_exception(exc)
            return
        self._flush()
        if not self.handshaken.done():
            self.handshaken.set_result(None)

    def _arm_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        wait = self.conn.DTLSv1_get_timeout() or 1.0
        self._timer = asyncio.get_running_loop().call_later(wait, self._retransmit)

    def _retransmit(self) -> None:
        if self.handshaken is not None and not self.handshaken.done():
            self.conn.DTLSv1_handle_timeout()
            self._flush()
            self._arm_timer()

    def _flush(self) -> None:
        pending = b""
        while True:
            try:
                pending += self.conn.bio_read(65535)
            except SSL.WantReadError:
                break
        assert self.transport is not None
        for datagram in pack_datagrams(pending, 1200):
            self.transport.sendto(datagram)


@dataclass
class WorkerResult:
    """What one generator process measured."""

    handshakes: int = 0
    handshake_s: float = 0.0
    replies: int = 0
    errors: dict[str, int] = field(default_factory=dict)
    rtt_ms: list[float] = field(default_factory=list)


def _worker(identities: list[Identity], ca_pem: Path, port: int, channels: int,
            concurrency: int, pipe: Connection) -> None:
    asyncio.run(_work(identities, ca_pem, port, channels, concurrency, pipe))


async def _work(identities: list[Identity], ca_pem: Path, port: int, channels: int,
                concurrency: int, pipe: Connection) -> None:
    loop = asyncio.get_running_loop()
    peers = [Peer(i, ca_pem, channels) for i in identities]
    for peer in peers:
        await loop.create_datagram_endpoint(lambda p=peer: p,  # type: ignore[misc]
                                            remote_addr=("127.0.0.1", port))
    result = WorkerResult()
    gate = asyncio.Semaphore(concurrency)

    async def shake(peer: Peer) -> bool:
        async with gate:
            try:
                await peer.handshake()
                return True
            except (SSL.Error, TimeoutError):
                return False

    started = time.perf_counter()
    ok = await asyncio.gather(*(shake(p) for p in peers))
    result.handshake_s = time.perf_counter() - started
    result.handshakes = sum(ok)
    live = [p for p, good in zip(peers, ok, strict=True) if good]
    pipe.send(("ready", result.handshakes, result.handshake_s))
    t_start, t_end = await loop.run_in_executor(None, pipe.recv)
    await asyncio.gather(*(_drive(p, t_start, t_end, result) for p in live))
    for peer in peers:
        if peer.transport is not None:
            peer.transport.close()
    if len(result.rtt_ms) > _MAX_RTT_SAMPLES:
        result.rtt_ms = result.rtt_ms[:: len(result.rtt_ms) // _MAX_RTT_SAMPLES + 1]
    pipe.send(("done", result))


async def _drive(peer: Peer, t_start: float, t_end: float, result: WorkerResult) -> None:
    while (now := time.time()) < t_end:
        sent = time.perf_counter()
        try:
            code = await peer.post()
        except TimeoutError:
            result.errors["timeout"] = result.errors.get("timeout", 0) + 1
            continue
        if now >= t_start and time.time() <= t_end:
            if code == _CHANGED:
                result.replies += 1
                result.rtt_ms.append((time.perf_counter() - sent) * 1000)
            else:
                name = f"{code >> 5}.{code & 0x1F:02d}"
                result.errors[name] = result.errors.get(name, 0) + 1


def gateway_cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process, all threads (/proc/<pid>/stat)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _TICK


def rss_kib(pid: int) -> int:
    """VmRSS of a process in KiB (/proc/<pid>/status)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def _free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _gateway_command() -> str:
    found = shutil.which("tandem-gateway", path=str(Path(sys.executable).parent))
    if not found:
        raise FileNotFoundError("tandem-gateway not found: install the package (make venv)")
    return found


def _gateway_config(root: Path, ca: SiteCA, gw: Identity, port: int) -> Path:
    path = root / "gateway.toml"
    path.write_text(f"""\
version = 1
[gateway]
id = "gw-bench"
data_dir = "data"
[identity]
cert = "{gw.cert_pem}"
key = "{gw.key_pem}"
ca = "{ca.cert_pem_path}"
[coap]
host = "127.0.0.1"
port = {port}
max_peers = 4096
[pipeline]
window_s = 10.0
max_pending = 100000
[metrics]
port = 0
""")
    return path


@dataclass(frozen=True)
class Options:
    """Command-line settings."""

    peers: int
    channels: int
    seconds: float
    workers: int
    concurrency: int
    soak_minutes: float


def run(opts: Options) -> int:
    """Set up PKI and gateway, run the generators, print the figures."""
    with tempfile.TemporaryDirectory(prefix="bench-coap-") as tmp:
        root = Path(tmp)
        ca = SiteCA.create(root / "pki", "bench")
        gw = ca.issue("gw-bench", Role.GATEWAY, ("127.0.0.1",))
        devices = [ca.issue(f"node-{i:04d}", Role.DEVICE) for i in range(opts.peers)]
        port = _free_udp_port()
        gateway = Child("gateway", [_gateway_command(), "run", "--config",
                                    str(_gateway_config(root, ca, gw, port))], cwd=root)
        try:
            gateway.wait_for(r"listening on coaps://", timeout=60)
            return _measure(opts, gateway.proc.pid, devices, ca.cert_pem_path, port)
        finally:
            gateway.stop()


def _measure(opts: Options, pid: int, devices: list[Identity], ca_pem: Path, port: int) -> int:
    context = multiprocessing.get_context("spawn")
    pipes, procs = [], []
    for w in range(opts.workers):
        parent, child = context.Pipe()
        proc = context.Process(target=_worker, args=(devices[w::opts.workers], ca_pem, port,
                                                     opts.channels, opts.concurrency, child))
        proc.start()
        pipes.append(parent)
        procs.append(proc)
    print(f"gateway up; {len(procs)} generator processes started", flush=True)
    try:
        return _coordinate(opts, pid, pipes)
    except BaseException:  # a failure or a stop signal: the generators stop now
        for proc in procs:
            proc.kill()
        raise
    finally:
        for proc in procs:
            proc.join(60)
            if proc.is_alive():
                proc.kill()
                proc.join()


def _coordinate(opts: Options, pid: int, pipes: list[Connection]) -> int:
    rss_start = rss_kib(pid)
    ready = [pipe.recv() for pipe in pipes]
    handshakes = sum(r[1] for r in ready)
    handshake_s = max(r[2] for r in ready)
    duration = opts.soak_minutes * 60 if opts.soak_minutes else opts.seconds
    warmup = 3.0
    t_start = time.time() + warmup
    t_end = t_start + duration
    for pipe in pipes:
        pipe.send((t_start, t_end))
    while time.time() < t_start:
        time.sleep(0.01)
    cpu_start, wall_start, rss_loaded = gateway_cpu_s(pid), time.time(), rss_kib(pid)
    rss_samples = [(0.0, rss_loaded)]
    while time.time() < t_end:
        time.sleep(min(60.0, max(0.0, t_end - time.time())))
        rss_samples.append((time.time() - wall_start, rss_kib(pid)))
    cpu = gateway_cpu_s(pid) - cpu_start
    wall = time.time() - wall_start
    results: list[WorkerResult] = [pipe.recv()[1] for pipe in pipes]
    replies = sum(r.replies for r in results)
    errors: dict[str, int] = {}
    for r in results:
        for name, count in r.errors.items():
            errors[name] = errors.get(name, 0) + count
    rtt = np.asarray([x for r in results for x in r.rtt_ms]) if replies else np.zeros(1)
    print(f"peers {opts.peers} in {opts.workers} generator processes, {opts.channels} "
          f"channels per report, one request in flight per peer")
    print(f"handshakes   {handshakes}/{opts.peers} in {handshake_s:.2f} s = "
          f"{handshakes / handshake_s:.0f}/s ({opts.concurrency} at a time per process)")
    print(f"window       {wall:.1f} s after {warmup:.0f} s warm-up; "
          f"other replies/timeouts {errors or 'none'}")
    readings = replies * opts.channels
    print(f"reports/s    {replies / wall:,.0f}   readings/s {readings / wall:,.0f}")
    print(f"CoAP RTT     p50 {np.percentile(rtt, 50):.2f} ms  p99 {np.percentile(rtt, 99):.2f} ms"
          f"  (send -> 2.04, measured in the generator)")
    share = cpu / wall
    print(f"gateway CPU  {cpu:.1f} s over {wall:.1f} s = {share:.2f} of one core; "
          f"readings/s per core-second {replies * opts.channels / cpu if cpu else 0:,.0f}")
    print(f"gateway RSS  {rss_start / 1024:.1f} MiB idle, {rss_loaded / 1024:.1f} MiB at load "
          f"start, {rss_samples[-1][1] / 1024:.1f} MiB at the end")
    if opts.soak_minutes:
        print("RSS samples  " + ", ".join(f"{t / 60:.1f} min: {kib / 1024:.1f} MiB"
                                          for t, kib in rss_samples))
    return 0


def main(argv: list[str] | None = None) -> int:
    """Parse arguments and run the benchmark."""
    parser = argparse.ArgumentParser(description="CoAP/DTLS ingest benchmark (500 peers)")
    parser.add_argument("--peers", type=int, default=500)
    parser.add_argument("--channels", type=int, default=8, help="readings per report (1..32)")
    parser.add_argument("--seconds", type=float, default=20.0, help="timed window")
    parser.add_argument("--workers", type=int, default=2, help="generator processes")
    parser.add_argument("--handshake-concurrency", type=int, default=16,
                        help="handshakes in flight per generator process")
    parser.add_argument("--soak", type=float, default=0.0, metavar="MINUTES",
                        help="run this long instead of --seconds; print RSS each minute")
    args = parser.parse_args(argv)
    return run(Options(args.peers, args.channels, args.seconds, args.workers,
                       args.handshake_concurrency, args.soak))


if __name__ == "__main__":
    sys.exit(main())
