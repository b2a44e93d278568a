"""The InfluxDB v1 HTTP API (/write line protocol, /query InfluxQL, /ping) over httpx.

This is the transport only: it moves lines and statements and maps failures.
Writes go in chunks of at most `batch_points` lines; a 5xx answer or a network
error is retried with exponential backoff, and once the attempts are used up
(or for any answer that retrying cannot fix) StorageUnavailable is raised, so
the caller answers 503 and the gateway resends later. The v1 API is served by
InfluxDB 1.x and, for compatibility, by 2.x and 3.x too.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import httpx

from tandem.cloud.errors import StorageUnavailable

log = logging.getLogger(__name__)

BATCH_POINTS = 5000
ATTEMPTS = 4
BACKOFF_S = 0.05  # 0.05, 0.1, 0.2: bounded, because ingest holds a ledger transaction meanwhile
_RETENTION_DROP = "points beyond retention policy dropped="

Row = list[Any]


class InfluxHTTP:
    """A client of one InfluxDB database through the v1 HTTP API."""

    def __init__(self, url: str, database: str, username: str = "", password: str = "",
                 timeout_s: float = 10.0, transport: httpx.BaseTransport | None = None,
                 sleep: Callable[[float], None] = time.sleep,
                 batch_points: int = BATCH_POINTS, attempts: int = ATTEMPTS) -> None:
        auth = httpx.BasicAuth(username, password) if username else None
        self.database = database
        self._http = httpx.Client(base_url=url.rstrip("/"), auth=auth, timeout=timeout_s,
                                  transport=transport)
        self._sleep = sleep
        self._batch_points = batch_points
        self._attempts = attempts

    def write(self, lines: Sequence[str], retention_policy: str | None = None) -> None:
        """POST lines (ms timestamps) in chunks; raise StorageUnavailable if they cannot land."""
        params = {"db": self.database, "precision": "ms"}
        if retention_policy:
            params["rp"] = retention_policy
        for start in range(0, len(lines), self._batch_points):
            body = "\n".join(lines[start:start + self._batch_points]).encode()
            self._write_chunk(body, params)

    def _write_chunk(self, body: bytes, params: dict[str, str]) -> None:
        response = self._with_retries(lambda: self._http.post("/write", params=params,
                                                              content=body))
        if response.status_code == 204:
            return
        detail = _error_text(response)
        if response.status_code == 400 and _RETENTION_DROP in detail:
            # points older than the retention policy: they would be expired anyway
            log.warning("InfluxDB dropped points beyond retention: %s", detail)
            return
        log.error("InfluxDB refused a write (%d): %s", response.status_code, detail)
        raise StorageUnavailable(f"InfluxDB write failed ({response.status_code}): {detail}")

    def query(self, statement: str, *, modify: bool = False) -> list[dict[str, Any]]:
        """Run InfluxQL; return its series ({name, columns, values}). modify uses POST."""
        params = {"db": self.database, "q": statement, "epoch": "ms"}
        response = self._with_retries(
            lambda: (self._http.post if modify else self._http.get)("/query", params=params))
        if response.status_code != 200:
            raise StorageUnavailable(f"InfluxDB query failed ({response.status_code}): "
                                     f"{_error_text(response)}")
        return _series(response.json(), statement)

    def query_rows(self, statement: str, chunk_size: int = 10_000) -> Iterator[Row]:
        """Stream the rows of one SELECT (chunked), without holding the result in memory."""
        params = {"db": self.database, "q": statement, "epoch": "ms", "chunked": "true",
                  "chunk_size": str(chunk_size)}
        try:
            with self._http.stream("GET", "/query", params=params) as response:
                if response.status_code != 200:
                    response.read()
                    raise StorageUnavailable(f"InfluxDB query failed "
                                             f"({response.status_code}): {_error_text(response)}")
                for line in response.iter_lines():
                    if line.strip():
                        for series in _series(json.loads(line), statement):
                            yield from series.get("values", [])
        except httpx.TransportError as exc:
            raise StorageUnavailable(f"InfluxDB unreachable: {exc}") from None

    def ping(self) -> None:
        """Raise StorageUnavailable unless /ping answers 204."""
        try:
            response = self._http.get("/ping")
        except httpx.TransportError as exc:
            raise StorageUnavailable(f"InfluxDB unreachable: {exc}") from None
        if response.status_code != 204:
            raise StorageUnavailable(f"InfluxDB /ping answered {response.status_code}")

    def close(self) -> None:
        """Close the connection pool."""
        self._http.close()

    def _with_retries(self, send: Callable[[], httpx.Response]) -> httpx.Response:
        """send(), again after a backoff on 5xx or a network error; the last answer or error."""
        for attempt in range(1, self._attempts + 1):
            try:
                response = send()
            except httpx.TransportError as exc:
                if attempt == self._attempts:
                    raise StorageUnavailable(f"InfluxDB unreachable: {exc}") from None
                log.warning("InfluxDB unreachable (attempt %d): %s", attempt, exc)
            else:
                if response.status_code < 500 or attempt == self._attempts:
                    return response
                log.warning("InfluxDB answered %d (attempt %d)", response.status_code, attempt)
            self._sleep(BACKOFF_S * 2 ** (attempt - 1))
        raise AssertionError("unreachable")


def _series(body: Any, statement: str) -> list[dict[str, Any]]:
    if not isinstance(body, dict):
        raise StorageUnavailable("InfluxDB answered something that is not a JSON object")
    if "error" in body:
        raise StorageUnavailable(f"InfluxDB: {body['error']} in {statement!r}")
    series: list[dict[str, Any]] = []
    for result in body.get("results", []):
        if "error" in result:
            raise StorageUnavailable(f"InfluxDB: {result['error']} in {statement!r}")
        series.extend(result.get("series", []))
    return series


def _error_text(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text[:500]
    if isinstance(body, dict) and "error" in body:
        return str(body["error"])
    return response.text[:500]
