"""One sqlite3 connection in a process of its own.

Why a process and not a thread: CPython's ``sqlite3`` module takes the GIL back around every step
of every statement, so a connection on a thread of the server's process runs only while the event
loop waits; the two take turns, and a job costs the sum of both. In a process of its own, SQLite
runs one batch while the event loop runs the jobs the last one claimed.

The child is ``python -m conveyor.jobs.sqlite_child``. It reads calls from its stdin, each a
pickled function, runs ``function(connection)`` and writes back its result or error. Functions
are module-level (``sqlite_ops.py``), bound with ``functools.partial``, so they pickle by
reference. The first call opens the connection.

The child exits when its stdin closes: when the store closes it, or when the server process ends
in any way, killed included, so it never outlives the server. It ignores SIGINT and SIGTERM,
which a terminal or a supervisor sends the whole process group: the server closes it after its
last writes.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import pickle
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from conveyor.jobs.sqlite_child import HEADER

T = TypeVar("T")
Call = Callable[[Any], T]  # a function of the connection
Done = Callable[[Any, BaseException | None], None]

logger = logging.getLogger("conveyor.store")

_CLOSE_TIMEOUT_S = 10.0  # the child's last batch, then its exit; past this it is killed


class DatabaseProcessGone(Exception):
    """The database process exited while the store was open (killed, out of memory)."""


class SQLiteProcess:
    def __init__(self, connect: Call[Any]) -> None:
        """``connect``: a picklable function (its argument is ignored) that opens the connection."""
        self._connect = connect
        self._transport: asyncio.SubprocessTransport | None = None
        self._stdin: asyncio.WriteTransport | None = None
        self._waiting: dict[int, Done] = {}
        self._ids = itertools.count()
        self._buffer = bytearray()
        self._gone: BaseException | None = None
        self._exited: asyncio.Future[None] | None = None
        self._opened: asyncio.Future[None] | None = None

    @property
    def pid(self) -> int | None:
        return None if self._transport is None else self._transport.get_pid()

    async def spawn(self) -> None:
        """Start the process and send it the connection's opening, without waiting for either
        (``start`` waits): it starts while this process goes on with its own start."""
        if self._transport is not None:
            return
        loop = asyncio.get_running_loop()
        self._exited = loop.create_future()
        env = dict(os.environ)
        # The child imports the same conveyor as this process, wherever that came from.
        env["PYTHONPATH"] = os.pathsep.join(filter(None, (_PACKAGE_ROOT, env.get("PYTHONPATH"))))
        transport, _ = await loop.subprocess_exec(
            lambda: _Protocol(self),
            sys.executable,
            "-m",
            "conveyor.jobs.sqlite_child",
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=None,  # the server's stderr: where its logs go
            env=env,
        )
        self._transport = transport
        self._stdin = transport.get_pipe_transport(0)  # type: ignore[assignment]
        self._opened = self._answer_of(self._connect)

    async def start(self) -> None:
        """Start the process (unless ``spawn`` did) and open the connection in it; raises what
        connecting raised."""
        await self.spawn()
        if self._opened is None:
            raise RuntimeError("the database process is closed")
        try:
            await self._opened
        except BaseException:
            await self.close()
            raise

    async def call(self, function: Call[T]) -> T:
        """Run ``function(connection)`` in the process and return what it returned."""
        return await self._answer_of(function)

    def _answer_of(self, function: Call[T]) -> asyncio.Future[T]:
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()

        def settle(result: Any, error: BaseException | None) -> None:
            if future.done():  # the caller was cancelled meanwhile
                return
            if error is not None:
                future.set_exception(error)
            else:
                future.set_result(result)

        self.submit(function, settle)
        return future

    def submit(self, function: Call[Any], done: Done) -> None:
        """Send ``function(connection)`` to the process; ``done(result, error)`` is called on
        this event loop when its answer is back: a trip with no task waiting on it."""
        if self._stdin is None or self._gone is not None:
            done(None, self._gone or RuntimeError("the database process is not running"))
            return
        call_id = next(self._ids)
        payload = pickle.dumps(function, pickle.HIGHEST_PROTOCOL)
        self._waiting[call_id] = done
        self._stdin.write(HEADER.pack(len(payload), call_id) + payload)

    async def close(self) -> None:
        """Let the process finish the calls already sent, then end it."""
        transport, stdin, exited, opened = self._transport, self._stdin, self._exited, self._opened
        self._transport = self._stdin = self._opened = None
        if opened is not None and opened.done() and not opened.cancelled():
            opened.exception()  # a start that failed, or was never awaited: nothing more to say
        if transport is None or exited is None:
            return
        if stdin is not None:
            stdin.close()  # end of input: the child answers what it has, then exits
        try:
            await asyncio.wait_for(asyncio.shield(exited), _CLOSE_TIMEOUT_S)
        except TimeoutError:
            logger.error(
                "the database process did not exit: killed", extra={"action": "store.process_killed"}
            )
            transport.kill()
            await asyncio.shield(exited)
        finally:
            transport.close()

    # -- from the protocol --------------------------------------------------------------------

    def _received(self, data: bytes) -> None:
        buffer = self._buffer
        buffer += data
        while len(buffer) >= HEADER.size:
            size, call_id = HEADER.unpack_from(buffer)
            end = HEADER.size + size
            if len(buffer) < end:
                return
            try:
                result, error = pickle.loads(memoryview(buffer)[HEADER.size : end])
            except Exception as exc:  # a bug: the caller hears of it rather than waits forever
                result, error = None, RuntimeError(f"the database process's answer did not unpickle: {exc!r}")
            del buffer[:end]
            done = self._waiting.pop(call_id, None)
            if done is not None:
                done(result, error)

    def _answers_ended(self, code: int | None) -> None:
        """No answer can come any more (the child closed its stdout: it exited, or is exiting)."""
        gone = DatabaseProcessGone(
            "the database process exited" + ("" if code is None else f" (code {code})")
        )
        if self._transport is not None:  # not closed by the store: it died
            logger.error(str(gone), extra={"action": "store.process_exited", "code": code})
        self._gone = gone
        waiting, self._waiting = self._waiting, {}
        for done in waiting.values():
            done(None, gone)

    def _process_exited(self) -> None:
        if self._exited is not None and not self._exited.done():
            self._exited.set_result(None)


class _Protocol(asyncio.SubprocessProtocol):
    def __init__(self, owner: SQLiteProcess) -> None:
        self._owner = owner
        self._transport: asyncio.SubprocessTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]

    def pipe_data_received(self, fd: int, data: bytes) -> None:
        if fd == 1:
            self._owner._received(data)

    def pipe_connection_lost(self, fd: int, exc: Exception | None) -> None:
        # Its answers come before this, in order, where the exit may be told before them.
        if fd == 1:
            self._owner._answers_ended(None if self._transport is None else self._transport.get_returncode())

    def process_exited(self) -> None:
        self._owner._process_exited()


_PACKAGE_ROOT = str(Path(__file__).resolve().parents[2])  # the folder that holds ``conveyor``
