"""The field-bus thread: Modbus polls and verified writes on an event loop of their own.

Under load the gateway's loop runs hundreds of callbacks between two frames
of an emergency stop; the stop must not queue behind them. So every Modbus
client lives on this thread's loop: the reflex hands a stop over with `run`
(the coroutine crosses by `call_soon_threadsafe`, asyncio's thread-safe
queue), the write and its read-back run back to back here, and the outcome
goes back to the gateway's loop the same way. Poll results cross the other
way through `CrossLoopSink`.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import threading
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, TypeVar

from tandem.gateway.reports import DeviceReport, ReportSink

T = TypeVar("T")
log = logging.getLogger(__name__)

Spawner = Callable[[asyncio.Event], list[tuple[str, Coroutine[Any, Any, None]]]]


class FieldbusThread:
    """A daemon thread running one event loop; started on first use, stopped by `close()`."""

    def __init__(self, name: str = "fieldbus") -> None:
        self.name = name
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._main, name=name, daemon=True)
        self._ready = threading.Event()
        self._stopping = asyncio.Event()  # set on this thread's loop only
        self._spawned: list[concurrent.futures.Future[None]] = []

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        """The field-bus loop (for code that must schedule onto it)."""
        return self._loop

    @property
    def native_id(self) -> int:
        """The thread's kernel id (for /proc figures); 0 before it starts."""
        return self._thread.native_id or 0

    def start(self) -> None:
        """Start the thread (idempotent); returns once its loop runs."""
        if not self._thread.is_alive() and not self._loop.is_closed():
            self._thread.start()
            self._ready.wait(10)

    def submit(self, coro: Coroutine[Any, Any, T]) -> concurrent.futures.Future[T]:
        """Schedule a coroutine on the field-bus loop from any thread."""
        self.start()
        return asyncio.run_coroutine_threadsafe(coro, self._loop)

    def run(self, coro: Coroutine[Any, Any, T]) -> asyncio.Future[T]:
        """Run a coroutine on the field-bus loop (handed over now, not when awaited); await the
        result on the caller's loop."""
        return asyncio.wrap_future(self.submit(coro))

    def spawn(self, make: Spawner) -> None:
        """Run long-lived tasks (pollers) on the field-bus loop until `close()`."""
        for name, coro in make(self._stopping):
            future = self.submit(_named(name, coro))
            self._spawned.append(future)

    async def stop_tasks(self) -> None:
        """Tell the spawned tasks to stop and wait until they have."""
        if self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._stopping.set)
        spawned, self._spawned = self._spawned, []
        for future in spawned:
            with contextlib.suppress(Exception):
                await asyncio.wrap_future(future)

    async def respawn(self, make: Spawner) -> None:
        """Stop the spawned tasks, then run a new set (a Modbus reload)."""
        await self.stop_tasks()
        if self._thread.is_alive():
            await self.run(_cleared(self._stopping))
        self.spawn(make)

    async def close(self, *closers: Callable[[], Awaitable[None]]) -> None:
        """Stop spawned tasks, run `closers` on the field-bus loop, then end the thread."""
        if not self._thread.is_alive():
            if not self._loop.is_closed() and self._thread.ident is None:
                self._loop.close()
            return
        await self.stop_tasks()
        for close in closers:
            try:
                await self.run(_awaited(close))
            except Exception:
                log.exception("field-bus closer failed")
        self._loop.call_soon_threadsafe(self._loop.stop)
        await asyncio.to_thread(self._thread.join, 10)

    def _main(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._loop.call_soon(self._ready.set)
        try:
            self._loop.run_forever()
        finally:
            leftovers = asyncio.all_tasks(self._loop)
            for task in leftovers:
                task.cancel()
            self._loop.run_until_complete(asyncio.gather(*leftovers, return_exceptions=True))
            self._loop.run_until_complete(self._loop.shutdown_asyncgens())
            self._loop.close()


class CrossLoopSink:
    """A ReportSink for the field-bus loop that submits into a sink on the gateway's loop."""

    def __init__(self, sink: ReportSink) -> None:
        self._sink = sink
        self._loop: asyncio.AbstractEventLoop | None = None

    def bind(self, loop: asyncio.AbstractEventLoop) -> None:
        """The loop the target sink lives on (the gateway's, known once it runs)."""
        self._loop = loop

    async def submit(self, item: DeviceReport) -> bool:
        """Submit on the sink's loop; wait here for its answer."""
        if self._loop is None:
            raise RuntimeError("CrossLoopSink used before bind()")
        future = asyncio.run_coroutine_threadsafe(self._sink.submit(item), self._loop)
        return await asyncio.wrap_future(future)


async def _named(name: str, coro: Coroutine[Any, Any, None]) -> None:
    task = asyncio.current_task()
    if task is not None:
        task.set_name(name)
    try:
        await coro
    except Exception:
        log.critical("field-bus task %s crashed", name, exc_info=True)
        raise


async def _awaited(close: Callable[[], Awaitable[None]]) -> None:
    await close()


async def _cleared(event: asyncio.Event) -> None:
    event.clear()
