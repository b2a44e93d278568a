"""A gateway stand-in for the vibration node: reports, a command queue at /c, block-wise /raw.

The Block1 reassembly is aiocoap's own (`aiocoap.blockwise.Block1Spool`), so
the node's RFC 7959 client is checked against an independent implementation.
"""

from __future__ import annotations

import asyncio
import threading
from dataclasses import dataclass, field
from typing import Any

import cbor2
from aiocoap import ACK, CHANGED, CONTENT, Message
from aiocoap.blockwise import Block1Spool
from aiocoap.error import ConstructionRenderableError

from tests.firmware.dtls_peer import reply


@dataclass(frozen=True)
class _Remote:
    blockwise_key: tuple[str, ...] = ("node",)


@dataclass
class VibrationGateway:
    """Handler state: reports seen, commands to hand out, raw snippets assembled."""

    commands: list[Any] = field(default_factory=list)  # CBOR-able items or raw bytes
    polls: list[str] = field(default_factory=list)  # the query of each GET /c
    raws: list[dict[int, Any]] = field(default_factory=list)
    blocks: list[tuple[int, bool, int]] = field(default_factory=list)  # Block1 num, more, size
    reports: list[bytes] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    _spool: Block1Spool | None = None

    def __call__(self, request: Message) -> list[bytes]:
        path = request.opt.uri_path
        with self.lock:
            if path == ("r",):
                self.reports.append(request.payload)
                return [reply(request, CHANGED)]
            if path == ("c",):
                self.polls.append("&".join(request.opt.uri_query))
                if not self.commands:
                    return [reply(request, CONTENT)]
                item = self.commands.pop(0)
                body = item if isinstance(item, bytes) else cbor2.dumps(item)
                return [reply(request, CONTENT, body)]
            if path == ("raw",):
                return [self._raw(request)]
        return []

    def _raw(self, request: Message) -> bytes:
        b1 = request.opt.block1
        self.blocks.append((b1.block_number, b1.more, b1.size))
        request.remote = _Remote()
        try:
            whole = asyncio.run(self._feed(request))
        except ConstructionRenderableError as exc:
            answer = exc.to_message()
            answer.mtype, answer.mid, answer.token = ACK, request.mid, request.token
            return bytes(answer.encode())
        self.raws.append(cbor2.loads(whole.payload))
        done = Message(code=CHANGED)
        done.opt.block1 = b1
        done.mtype, done.mid, done.token = ACK, request.mid, request.token
        return bytes(done.encode())

    async def _feed(self, request: Message) -> Message:
        if self._spool is None:
            self._spool = Block1Spool()
        return self._spool.feed_and_take(request)
