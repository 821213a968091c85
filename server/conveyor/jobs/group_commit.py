"""Group commit for SQLite: concurrent callers' statements share one transaction and one fsync.

Each store call queues an operation (a function of the sqlite3 connection). A caller that
finds no batch in flight leads: it runs every queued operation in one transaction, in one trip
to the connection's thread, then hands the lead to the first caller that queued meanwhile. A
caller gets its result only after the transaction holding its operation has committed, so
"committed before it returns" holds for every caller, at one commit per batch instead of one
per statement. No background task: whoever waits does the work.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar, cast

import aiosqlite
import anyio
import anyio.lowlevel

T = TypeVar("T")
Operation = Callable[[sqlite3.Connection], T]

MAX_BATCH = 1000  # operations per transaction: bounds how long one commit keeps the others waiting


async def connect(path: str | Path) -> tuple[aiosqlite.Connection, GroupCommit]:
    """An aiosqlite connection (autocommit) and a group committer on the same connection."""
    raw: list[sqlite3.Connection] = []

    def connector() -> sqlite3.Connection:
        conn = sqlite3.connect(str(path), isolation_level=None)
        raw.append(conn)
        return conn

    db = await aiosqlite.Connection(connector, iter_chunk_size=64)
    return db, GroupCommit(db, raw[0])


@dataclass(slots=True, eq=False)
class _Pending:
    operation: Operation[Any]
    done: anyio.Event = field(default_factory=anyio.Event)
    finished: bool = False
    result: Any = None
    error: BaseException | None = None

    def outcome(self) -> Any:
        if self.error is not None:
            raise self.error
        return self.result


class GroupCommit:
    def __init__(self, db: aiosqlite.Connection, raw: sqlite3.Connection) -> None:
        self._db = db
        self._raw = raw
        self._queue: list[_Pending] = []
        self._leading = False

    async def run(self, operation: Operation[T]) -> T:
        """Run ``operation`` in a transaction shared with whatever else is queued; committed on return."""
        pending = _Pending(operation)
        self._queue.append(pending)
        if self._leading:
            # Shielded: a waiter may be promoted to lead, and a lost lead would stall every caller.
            with anyio.CancelScope(shield=True):
                await pending.done.wait()
            if pending.finished:
                return cast(T, pending.outcome())
        self._leading = True
        with anyio.CancelScope(shield=True):
            await self._lead()
        return cast(T, pending.outcome())

    async def _lead(self) -> None:
        # One turn of the event loop first: callers made ready by the same event (a submit and the
        # worker it woke) queue their operations into this batch instead of the next.
        await anyio.lowlevel.checkpoint()
        batch, self._queue = self._queue[:MAX_BATCH], self._queue[MAX_BATCH:]
        try:
            # aiosqlite has no public way to run several statements in one trip to its thread;
            # its own Cursor uses this method, so it is as stable as the package.
            await self._db._execute(_run_batch, self._raw, batch)  # type: ignore[no-untyped-call]
        except Exception as exc:  # BEGIN or COMMIT failed, or the connection is gone: all learn it
            for pending in batch:
                pending.error = exc
        finally:
            for pending in batch:
                pending.finished = True
                pending.done.set()
            if self._queue:
                self._queue[0].done.set()  # the next leader
            else:
                self._leading = False


def _run_batch(conn: sqlite3.Connection, batch: list[_Pending]) -> None:
    """On the connection's thread: all operations in one transaction, or each alone if one fails."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        for pending in batch:
            pending.result = pending.operation(conn)
    except Exception as exc:
        conn.execute("ROLLBACK")
        if len(batch) == 1:
            batch[0].error = exc
            return
        # One bad operation must not fail the others: rerun each in a transaction of its own.
        for pending in batch:
            _run_alone(conn, pending)
        return
    _commit(conn)


def _commit(conn: sqlite3.Connection) -> None:
    try:
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise


def _run_alone(conn: sqlite3.Connection, pending: _Pending) -> None:
    pending.result = None
    conn.execute("BEGIN IMMEDIATE")
    try:
        pending.result = pending.operation(conn)
    except Exception as exc:
        conn.execute("ROLLBACK")
        pending.error = exc
        return
    try:
        _commit(conn)
    except Exception as exc:
        pending.result, pending.error = None, exc
