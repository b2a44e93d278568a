"""The browser side of `tandem bench installer`, in a process of its own.

Logs in to an installer page over HTTPS (password from TANDEM_BENCH_PASSWORD,
the site CA from --ca), then either times page loads (`loads`: one JSON line
of milliseconds per path) or polls the status page's JSON (`poll`: --rate
requests a second to each of its endpoints until stdin closes, then one JSON
line of counts). Its own work is thus on neither the gateway's loop nor its GIL.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import ssl
import sys
import threading
import time
from collections.abc import Sequence

import httpx

STATUS_JSON = ("/api/status", "/api/live?device=node-0001")


def main(argv: Sequence[str] | None = None) -> int:
    """Log in, then time loads or poll until stdin closes; print one JSON line."""
    parser = argparse.ArgumentParser(prog="python -m tandem.tools.bench.installerclient")
    parser.add_argument("mode", choices=("loads", "poll"))
    parser.add_argument("url", help="the installer page, https://host:port")
    parser.add_argument("--ca", required=True, help="the site CA (PEM)")
    parser.add_argument("--loads", type=int, default=20, help="loads: loads of each path")
    parser.add_argument("--rate", type=float, default=10.0, help="poll: requests/s per path")
    parser.add_argument("paths", nargs="*", help="loads: the paths to time")
    args = parser.parse_intermixed_args(argv)
    client = _logged_in(args.url, args.ca)
    try:
        if args.mode == "poll":
            print("polling", flush=True)  # the bench starts timing on this line
        result = _loads(client, args.paths, args.loads) if args.mode == "loads" \
            else _poll(client, args.rate)
    finally:
        client.close()
    print(json.dumps(result), flush=True)
    return 0


def _logged_in(url: str, ca: str) -> httpx.Client:
    client = httpx.Client(base_url=url, verify=ssl.create_default_context(cafile=ca),
                          timeout=30)
    form = client.get("/login").text
    token = re.search(r'name="csrf" value="([^"]+)"', form)
    assert token is not None, form
    answer = client.post("/login", data={"password": os.environ["TANDEM_BENCH_PASSWORD"],
                                         "csrf": token[1]})
    if answer.status_code != 303:  # a login answers with a redirect to the status page
        raise RuntimeError(f"login refused: {answer.status_code} {answer.text[:200]}")
    return client


def _loads(client: httpx.Client, paths: list[str], loads: int) -> dict[str, list[float]]:
    """Milliseconds of each load of each path (after one warm-up load)."""
    timings: dict[str, list[float]] = {}
    for path in paths:
        client.get(path).raise_for_status()
        timings[path] = [_timed(client, path) for _ in range(loads)]
    return timings


def _timed(client: httpx.Client, path: str) -> float:
    started = time.perf_counter()
    client.get(path).raise_for_status()
    return (time.perf_counter() - started) * 1000


def _poll(client: httpx.Client, rate: float) -> dict[str, float]:
    """GET each status endpoint `rate` times a second until stdin closes; counts, and this
    process's CPU and wall seconds (the poller shares the machine's cores with the gateway)."""
    closed = threading.Event()

    def watch_stdin() -> None:
        sys.stdin.read()
        closed.set()

    threading.Thread(target=watch_stdin, daemon=True).start()
    counts = {"requests": 0.0, "failed": 0.0}
    started, cpu = time.monotonic(), time.process_time()
    next_at = started
    while not closed.is_set():
        for path in STATUS_JSON:
            counts["failed" if client.get(path).status_code != 200 else "requests"] += 1
        next_at += 1 / rate
        closed.wait(max(0.0, next_at - time.monotonic()))
    return {**counts, "cpu_s": time.process_time() - cpu, "wall_s": time.monotonic() - started}


if __name__ == "__main__":
    sys.exit(main())
