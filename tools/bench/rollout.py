"""Model transfer over a bandwidth-limited link: time, bytes, effective rate, resume cost.

Builds --versions model versions with tools/make_model.py (no TensorFlow),
xz-compresses each as the registry does, serves them from a plain Flask app
with HTTP Range over loopback (any server with Range works) and downloads each
with the gateway's resumable transfer (gateway/models/transfer.py) bounded by
its token bucket at --rate bytes/s. The last download is interrupted after
half its chunks (the process "restarts": a new Download on the same
directory) to show the bytes sent again. Not measured here yet: the
closed-loop time from release to active on every gateway of a group (the
rollout test drives that path, without timing).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import logging
import lzma
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path

import httpx
from flask import Flask, Response, send_file
from prometheus_client import CollectorRegistry
from werkzeug.serving import make_server

from tandem.gateway.models.transfer import Download, TokenBucket, TransferMetrics
from tandem.tools.make_model import build_tflite, fit_autoencoder, healthy_windows
from tandem.wire.modelrelease import Artefact


def _artefact(store: Path, seed: int, bands: int, chunk: int) -> Artefact:
    weights = fit_autoencoder(healthy_windows(200, bands, 256, seed), 4)
    packed = lzma.compress(build_tflite(weights, f"bench {seed}"), preset=9)
    digest = hashlib.sha256(packed).hexdigest()
    (store / digest).write_bytes(packed)
    chunks = tuple(hashlib.sha256(packed[i:i + chunk]).hexdigest()
                   for i in range(0, len(packed), chunk))
    return Artefact("full", None, "xz", digest, len(packed), f"/a/{digest}", chunk, chunks)


def _server(store: Path) -> tuple[str, object, threading.Thread]:
    app = Flask(__name__)
    logging.getLogger("werkzeug").setLevel(logging.WARNING)

    @app.get("/a/<digest>")
    def artefact(digest: str) -> Response:
        return send_file(store / digest, conditional=True, etag=digest)

    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    return f"http://127.0.0.1:{server.server_port}", server, thread


async def _no_headers() -> dict[str, str]:
    return {}


async def _download(url: str, art: Artefact, into: Path, rate: int, stop_after: int = 0) -> \
        tuple[float, int, int]:
    """(seconds, bytes received, offset resumed from); stop_after > 0 cuts after that many."""
    calls = [0]

    async def cut(response: httpx.Response) -> None:
        calls[0] += 1
        if stop_after and calls[0] > stop_after:
            raise httpx.ConnectError("link cut (bench)")

    async with httpx.AsyncClient(base_url=url, event_hooks={"response": [cut]}) as http:
        download = Download(http, art, into, _no_headers, TransferMetrics(CollectorRegistry()),
                            TokenBucket(rate, art.chunk))
        started = time.perf_counter()
        with contextlib.suppress(httpx.HTTPError):  # the cut: the next run resumes
            await download.run()
        return time.perf_counter() - started, download.received, download.resumed_from


def main(argv: Sequence[str] | None = None) -> int:
    """Run the transfers and print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--versions", type=int, default=3)
    parser.add_argument("--bands", type=int, default=64)
    parser.add_argument("--chunk", type=int, default=512)
    parser.add_argument("--rate", type=int, default=4096, help="bytes/s per gateway")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        store, into = Path(tmp) / "store", Path(tmp) / "gw"
        store.mkdir()
        arts = [_artefact(store, seed, args.bands, args.chunk) for seed in range(args.versions)]
        url, server, thread = _server(store)
        try:
            for i, art in enumerate(arts):
                seconds, received, _ = asyncio.run(_download(url, art, into, args.rate))
                print(f"transfer v{i + 1}: {art.size} bytes in {seconds:.2f} s "
                      f"({received / max(seconds, 1e-9) / 1024:.1f} KiB/s, limit "
                      f"{args.rate / 1024:.1f} KiB/s)")
            last = _artefact(store, 1000, args.bands, args.chunk)
            half = max(1, len(last.chunks) // 2)
            _, first, _ = asyncio.run(_download(url, last, into, args.rate, stop_after=half))
            _, second, resumed = asyncio.run(_download(url, last, into, args.rate))
            print(f"resume after a cut: {first} + {second} bytes for {last.size} "
                  f"(resent {first + second - last.size}, chunk {args.chunk}, "
                  f"resumed at {resumed})")
        finally:
            server.shutdown()  # type: ignore[attr-defined]
            thread.join(5)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
