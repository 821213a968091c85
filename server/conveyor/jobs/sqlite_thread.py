"""One sqlite3 connection on a thread of its own.

sqlite3 calls block, so they run off the event loop; a connection is used from one thread only,
so that thread is this object's. Each ``call`` is one trip: the function runs on the thread with
the connection, and its result (or exception) comes back to the awaiting task. The thread is a
daemon: a statement stuck on a dead disk must not keep the process from exiting.
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import sqlite3
import threading
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")
Call = Callable[[sqlite3.Connection], T]

_Item = tuple[Call[Any], asyncio.Future[Any], asyncio.AbstractEventLoop]


class SQLiteThread:
    def __init__(self, connect: Callable[[], sqlite3.Connection], *, name: str = "conveyor-sqlite") -> None:
        self._connect = connect
        self._name = name
        self._queue: queue.SimpleQueue[_Item | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._closed: asyncio.Future[None] | None = None

    async def start(self) -> None:
        """Start the thread and open the connection on it; raises what connecting raised."""
        loop = asyncio.get_running_loop()
        self._closed = loop.create_future()
        self._thread = threading.Thread(
            target=self._serve, args=(loop, self._closed), name=self._name, daemon=True
        )
        self._thread.start()
        try:
            await self.call(lambda _conn: None)  # answered once the thread has connected, or failed to
        except BaseException:
            await self.close()
            raise

    async def call(self, function: Call[T]) -> T:
        """Run ``function(connection)`` on the thread and return what it returned."""
        if self._thread is None:
            raise RuntimeError("the SQLite thread is not running")
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        self._queue.put((function, future, loop))
        return await future

    def submit(self, function: Call[Any], done: Callable[[BaseException | None], None]) -> None:
        """Run ``function(connection)`` on the thread, then call ``done`` on this event loop with
        what it raised (None if it returned): a trip with no task waiting on it."""
        if self._thread is None:
            done(RuntimeError("the SQLite thread is not running"))
            return
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        future.add_done_callback(lambda settled: done(settled.exception()))
        self._queue.put((function, future, asyncio.get_running_loop()))

    async def close(self) -> None:
        """Close the connection and end the thread, after the calls already queued."""
        thread, closed = self._thread, self._closed
        self._thread = self._closed = None
        if thread is None or closed is None:
            return
        self._queue.put(None)
        await asyncio.shield(closed)

    def _serve(self, loop: asyncio.AbstractEventLoop, closed: asyncio.Future[None]) -> None:
        conn: sqlite3.Connection | None = None
        failure: BaseException | None = None
        try:
            conn = self._connect()
        except BaseException as exc:
            failure = exc  # every call learns why, until the store closes
        try:
            while (item := self._queue.get()) is not None:
                function, future, caller_loop = item
                if conn is None:
                    _settle(caller_loop, future, None, failure)
                    continue
                try:
                    result = function(conn)
                except BaseException as exc:
                    _settle(caller_loop, future, None, exc)
                else:
                    _settle(caller_loop, future, result, None)
        finally:
            if conn is not None:
                conn.close()
            _settle(loop, closed, None, None)


def _settle(
    loop: asyncio.AbstractEventLoop, future: asyncio.Future[Any], result: Any, exc: BaseException | None
) -> None:
    def settle() -> None:
        if future.done():  # the caller was cancelled meanwhile
            return
        if exc is not None:
            future.set_exception(exc)
        else:
            future.set_result(result)

    with contextlib.suppress(RuntimeError):  # the loop is closed: nobody is waiting any more
        loop.call_soon_threadsafe(settle)
