"""The installer page from a test's side: the password, a cookie-keeping client, the CSRF token."""

from __future__ import annotations

import re
from typing import Any

from aiohttp import ClientResponse
from aiohttp.test_utils import TestClient

from tandem.gateway.installer.sessions import COOKIE

PASSWORD = "correct horse battery"


class Browser:
    """A test client that keeps the session cookie as a browser does over HTTPS.

    aiohttp's cookie jar rightly withholds a Secure cookie from plain HTTP.
    """

    def __init__(self, client: TestClient[Any, Any]) -> None:
        self.client = client
        self.cookie = ""

    async def get(self, path: str, **options: Any) -> ClientResponse:
        return self._keep(await self.client.get(path, headers=self._headers(), **options))

    async def post(self, path: str, **options: Any) -> ClientResponse:
        return self._keep(await self.client.post(path, headers=self._headers(), **options))

    async def close(self) -> None:
        await self.client.close()

    def _headers(self) -> dict[str, str]:
        return {"Cookie": f"{COOKIE}={self.cookie}"} if self.cookie else {}

    def _keep(self, response: ClientResponse) -> ClientResponse:
        found = re.search(rf"{COOKIE}=([^;]+)", response.headers.get("Set-Cookie", ""))
        if found:
            self.cookie = found[1]
        return response


async def csrf_token(client: Browser, path: str = "/login") -> str:
    page = await (await client.get(path)).text()
    found = re.search(r'name="csrf" value="([^"]+)"', page)
    assert found is not None, page
    return found[1]
