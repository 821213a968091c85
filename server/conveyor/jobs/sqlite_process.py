"""One sqlite3 connection in a process of its own.

Why a process and not a thread: CPython's ``sqlite3`` module takes the GIL back around every step
of every statement, so a connection on a thread of the server's process runs only while the event
loop waits; the two take turns, and a job costs the sum of both. In a process of its own, SQLite
runs one batch while the event loop runs the jobs the last one claimed.

The child is ``python -m conveyor.jobs.sqlite_process``. It reads calls from its stdin, each a
pickled ``(call id, function)`` frame, runs ``function(connection)`` and writes back
``(call id, result, error)``. Functions are module-level (``sqlite_ops.py``), bound with
``functools.partial``, so they pickle by reference. The first call opens the connection.

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
import signal
import struct
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO, TypeVar

T = TypeVar("T")
Call = Callable[[Any], T]  # a function of the connection
Done = Callable[[Any, BaseException | None], None]

logger = logging.getLogger("conveyor.store")

_HEADER = struct.Struct("<IQ")  # the payload's size, the call's id
_CLOSE_TIMEOUT_S = 10.0  # the child's last batch, then its exit; past this it is killed


class DatabaseProcessGone(Exception):
    """The database process exited while the store was open (killed, out of memory)."""


class SQLiteProcess:
    def __init__(self, connect: Call[Any], *, name: str = "conveyor-sqlite") -> None:
        """``connect``: a picklable function (its argument is ignored) that opens the connection."""
        self._connect = connect
        self.name = name
        self._transport: asyncio.SubprocessTransport | None = None
        self._stdin: asyncio.WriteTransport | None = None
        self._waiting: dict[int, Done] = {}
        self._ids = itertools.count()
        self._buffer = bytearray()
        self._gone: BaseException | None = None
        self._exited: asyncio.Future[None] | None = None

    @property
    def pid(self) -> int | None:
        return None if self._transport is None else self._transport.get_pid()

    async def start(self) -> None:
        """Start the process and open the connection in it; raises what connecting raised."""
        loop = asyncio.get_running_loop()
        self._exited = loop.create_future()
        env = dict(os.environ)
        # The child imports the same conveyor as this process, wherever that came from.
        env["PYTHONPATH"] = os.pathsep.join(filter(None, (_PACKAGE_ROOT, env.get("PYTHONPATH"))))
        transport, _ = await loop.subprocess_exec(
            lambda: _Protocol(self),
            sys.executable,
            "-m",
            "conveyor.jobs.sqlite_process",
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=None,  # the server's stderr: where its logs go
            env=env,
        )
        self._transport = transport
        self._stdin = transport.get_pipe_transport(0)  # type: ignore[assignment]
        try:
            await self.call(self._connect)
        except BaseException:
            await self.close()
            raise

    async def call(self, function: Call[T]) -> T:
        """Run ``function(connection)`` in the process and return what it returned."""
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()

        def settle(result: Any, error: BaseException | None) -> None:
            if future.done():  # the caller was cancelled meanwhile
                return
            if error is not None:
                future.set_exception(error)
            else:
                future.set_result(result)

        self.submit(function, settle)
        return await future

    def submit(self, function: Call[Any], done: Done) -> None:
        """Send ``function(connection)`` to the process; ``done(result, error)`` is called on
        this event loop when its answer is back: a trip with no task waiting on it."""
        if self._stdin is None or self._gone is not None:
            done(None, self._gone or RuntimeError("the database process is not running"))
            return
        call_id = next(self._ids)
        payload = pickle.dumps(function, pickle.HIGHEST_PROTOCOL)
        self._waiting[call_id] = done
        self._stdin.write(_HEADER.pack(len(payload), call_id) + payload)

    async def close(self) -> None:
        """Let the process finish the calls already sent, then end it."""
        transport, stdin, exited = self._transport, self._stdin, self._exited
        self._transport = self._stdin = None
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
        while len(buffer) >= _HEADER.size:
            size, call_id = _HEADER.unpack_from(buffer)
            end = _HEADER.size + size
            if len(buffer) < end:
                return
            result, error = pickle.loads(memoryview(buffer)[_HEADER.size : end])
            del buffer[:end]
            done = self._waiting.pop(call_id, None)
            if done is not None:
                done(result, error)

    def _process_exited(self, code: int | None) -> None:
        gone = DatabaseProcessGone(f"the database process exited (code {code})")
        if self._transport is not None:  # not closed by the store: it died
            logger.error(str(gone), extra={"action": "store.process_exited", "code": code})
        self._gone = gone
        waiting, self._waiting = self._waiting, {}
        for done in waiting.values():
            done(None, gone)
        if self._exited is not None and not self._exited.done():
            self._exited.set_result(None)


class _Protocol(asyncio.SubprocessProtocol):
    def __init__(self, owner: SQLiteProcess) -> None:
        self._owner = owner

    def pipe_data_received(self, fd: int, data: bytes) -> None:
        if fd == 1:
            self._owner._received(data)

    def process_exited(self) -> None:
        transport = self._owner._transport
        self._owner._process_exited(None if transport is None else transport.get_returncode())


_PACKAGE_ROOT = str(Path(__file__).resolve().parents[2])  # the folder that holds ``conveyor``


# -- the child -----------------------------------------------------------------------------------


class _Child:
    """The database process's side: the connection, and what it answers."""

    def __init__(self, answers: BinaryIO) -> None:
        self._answers = answers
        self._conn: Any = None
        self._failure: BaseException | None = None

    def serve(self, calls: int) -> None:
        """Answer the calls read from the file descriptor ``calls`` until it ends. Every read
        takes all that has arrived, so batches of the group committer that queued up while the
        last one ran are run as one (one transaction, one commit)."""
        from conveyor.jobs.group_commit import run_together

        buffer = bytearray()
        while chunk := os.read(calls, 1 << 20):
            buffer += chunk
            arrived: list[tuple[int, Any]] = []
            while len(buffer) >= _HEADER.size:
                size, call_id = _HEADER.unpack_from(buffer)
                end = _HEADER.size + size
                if len(buffer) < end:
                    break
                arrived.append((call_id, self._load(buffer[_HEADER.size : end])))
                del buffer[:end]
            while arrived:
                batches = _leading_batches(arrived)
                if len(batches) > 1 and self._conn is not None:
                    del arrived[: len(batches)]
                    answers = run_together(self._conn, [batch for _, batch in batches])
                    for (call_id, _), outcomes in zip(batches, answers, strict=True):
                        self._answer(call_id, outcomes, None)
                else:
                    self._call(*arrived.pop(0))
            self._answers.flush()
        if self._conn is not None:
            self._conn.close()

    @staticmethod
    def _load(payload: bytes | bytearray) -> Any:
        try:
            return pickle.loads(payload)
        except Exception as exc:  # answered as the call's error
            return exc

    def _call(self, call_id: int, function: Any) -> None:
        try:
            if isinstance(function, Exception):
                raise function  # it did not unpickle
            if self._conn is not None:
                result = function(self._conn)
            elif self._failure is not None:
                raise self._failure  # every call learns why the connection did not open
            else:  # the first call opens the connection
                try:
                    self._conn, result = function(None), None
                except BaseException as exc:
                    self._failure = exc
                    raise
        except BaseException as exc:
            self._answer(call_id, None, exc)
        else:
            self._answer(call_id, result, None)

    def _answer(self, call_id: int, result: Any, error: BaseException | None) -> None:
        try:
            payload = pickle.dumps((result, error), pickle.HIGHEST_PROTOCOL)
        except Exception as exc:  # an answer that does not pickle is a bug: say which, not hang the caller
            failure = RuntimeError(
                f"the database process could not send its answer back: {exc!r} ({error!r})"
            )
            payload = pickle.dumps((None, failure), pickle.HIGHEST_PROTOCOL)
        self._answers.write(_HEADER.pack(len(payload), call_id) + payload)


def _leading_batches(arrived: list[tuple[int, Any]]) -> list[tuple[int, Any]]:
    """The group committer's batches at the head of ``arrived``, as many as make one batch."""
    from conveyor.jobs.group_commit import MAX_BATCH, Batch

    leading: list[tuple[int, Any]] = []
    operations = 0
    for call_id, function in arrived:
        if not isinstance(function, Batch) or (leading and operations + len(function) > MAX_BATCH):
            break
        leading.append((call_id, function))
        operations += len(function)
    return leading


def main() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if hasattr(signal, "SIGTERM"):
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    # The answers go out on a copy of stdout; stdout itself goes to stderr, so that nothing
    # printed by accident can break a frame.
    answers = os.fdopen(os.dup(sys.stdout.fileno()), "wb")
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    # Its own records go nowhere: what goes wrong comes back to the server as an error, to log there.
    logging.getLogger("conveyor").addHandler(logging.NullHandler())
    logging.getLogger("conveyor").propagate = False
    _Child(answers).serve(sys.stdin.fileno())


if __name__ == "__main__":
    main()
