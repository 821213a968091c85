"""Group commit for SQLite: concurrent callers' statements share one transaction and one fsync.

Every statement of the store is an operation (a function of the sqlite3 connection) given to
``GroupCommit.run``. A caller that finds no batch in flight leads: it takes every queued
operation to the connection's thread in one trip, runs the reads in one read transaction and
the writes in one write transaction, then hands the lead to the first caller that queued
meanwhile. A caller gets its result only after the transaction holding its operation has
committed, so "committed before it returns" holds for every caller, at one commit per batch
instead of one per statement. No background task: whoever waits does the work.

Reads and writes of one batch come from callers that were waiting at the same time, so no order
between them was promised; reads go first, in a deferred transaction that takes no write lock,
so that another process holding the database's write lock delays only the writes.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any, TypeVar, cast

import anyio
import anyio.lowlevel

from conveyor.jobs.sqlite_thread import SQLiteThread

T = TypeVar("T")
Operation = Callable[[sqlite3.Connection], T]

MAX_BATCH = 1000  # operations per transaction: bounds how long one commit keeps the others waiting


@dataclass(slots=True, eq=False)
class _Pending:
    operation: Operation[Any]
    write: bool
    # A plain asyncio future, not an anyio Event: one per statement, and the store's thread
    # answers on asyncio anyway (sqlite_thread.py).
    done: asyncio.Future[None] = field(default_factory=lambda: asyncio.get_running_loop().create_future())
    finished: bool = False
    result: Any = None
    error: BaseException | None = None

    def wake(self) -> None:
        if not self.done.done():
            self.done.set_result(None)

    def outcome(self) -> Any:
        if self.error is not None:
            raise self.error
        return self.result


class GroupCommit:
    def __init__(self, thread: SQLiteThread, *, before_writes: Callable[[], None] | None = None) -> None:
        """``before_writes`` runs on the thread before each write transaction; if it raises, that
        batch's writes fail with its exception, and nothing is written."""
        self._thread = thread
        self._before_writes = before_writes
        self._queue: list[_Pending] = []
        self._leading = False

    async def run(self, operation: Operation[T], *, write: bool = True) -> T:
        """Run ``operation`` in a transaction shared with whatever else is queued; committed on return.

        ``write=False`` promises that the operation only reads: it then runs in a read
        transaction, which never waits for another process's write lock.
        """
        pending = _Pending(operation, write)
        self._queue.append(pending)
        # Shielded: a waiter may be promoted to lead, and a lost lead would stall every caller.
        with anyio.CancelScope(shield=True):
            if self._leading:
                await pending.done
                if pending.finished:
                    return cast(T, pending.outcome())
            self._leading = True
            await self._lead()
        return cast(T, pending.outcome())

    async def _lead(self) -> None:
        # One turn of the event loop first: callers made ready by the same event (a submit and the
        # worker it woke) queue their operations into this batch instead of the next.
        await anyio.lowlevel.checkpoint()
        batch, self._queue = self._queue[:MAX_BATCH], self._queue[MAX_BATCH:]
        try:
            await self._thread.call(partial(run_batch, batch=batch, before_writes=self._before_writes))
        except Exception as exc:  # the thread is gone (the store closed): all learn it
            for pending in batch:
                if not pending.finished:
                    pending.error = exc
        finally:
            for pending in batch:
                pending.finished = True
                pending.wake()
            if self._queue:
                self._queue[0].wake()  # the next leader
            else:
                self._leading = False


def run_batch(
    conn: sqlite3.Connection, batch: list[_Pending], before_writes: Callable[[], None] | None = None
) -> None:
    """On the connection's thread: the reads in one transaction, then the writes in another."""
    reads = [pending for pending in batch if not pending.write]
    writes = [pending for pending in batch if pending.write]
    if reads:
        _run_reads(conn, reads)
    if writes:
        try:
            if before_writes is not None:
                before_writes()
        except Exception as exc:
            for pending in writes:
                pending.error = exc
            return
        _run_writes(conn, writes)


def _run_reads(conn: sqlite3.Connection, reads: list[_Pending]) -> None:
    conn.execute("BEGIN")  # deferred: a consistent snapshot, and no lock that writers wait for
    try:
        for pending in reads:
            try:
                pending.result = pending.operation(conn)
            except Exception as exc:  # a read failing leaves the others' results standing
                pending.error = exc
    finally:
        if conn.in_transaction:
            conn.execute("ROLLBACK")  # nothing to keep, and it cannot fail for want of a lock


def _run_writes(conn: sqlite3.Connection, writes: list[_Pending]) -> None:
    try:
        conn.execute("BEGIN IMMEDIATE")  # the write lock up front: no deadlock upgrading a read
    except Exception as exc:  # busy (another process writes) or broken: none of them ran
        for pending in writes:
            pending.error = exc
        return
    try:
        for pending in writes:
            pending.result = pending.operation(conn)
    except Exception as exc:
        conn.execute("ROLLBACK")
        if len(writes) == 1:
            writes[0].error = exc
            return
        # One bad operation must not fail the others: rerun each in a transaction of its own.
        for pending in writes:
            _run_alone(conn, pending)
        return
    try:
        _commit(conn)
    except Exception as exc:
        for pending in writes:
            pending.result, pending.error = None, exc


def _commit(conn: sqlite3.Connection) -> None:
    try:
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise


def _run_alone(conn: sqlite3.Connection, pending: _Pending) -> None:
    pending.result = None
    try:
        conn.execute("BEGIN IMMEDIATE")
    except Exception as exc:
        pending.error = exc
        return
    try:
        pending.result = pending.operation(conn)
    except Exception as exc:
        conn.execute("ROLLBACK")
        pending.result, pending.error = None, exc
        return
    try:
        _commit(conn)
    except Exception as exc:
        pending.result, pending.error = None, exc
