"""Group commit for SQLite: concurrent callers' statements share one transaction and one fsync.

Every statement of the store is an operation (a function of the sqlite3 connection) given to
``GroupCommit.run``. Operations queue; a batch of every queued operation goes to the
connection's thread in one trip, which runs the reads in one read transaction and the writes in
one write transaction. One batch is on the thread at a time: when it ends, its callers are woken,
and one turn of the event loop later (so that what they queue on waking joins it) the next batch
goes. A caller gets its result only after the transaction holding its operation has committed,
so "committed before it returns" holds for every caller, at one commit per batch instead of one
per statement. The batches are sent from event-loop callbacks, not by a leading caller, so a
caller that is cancelled while it waits stalls nobody: its operation stays queued and commits,
and only its answer is dropped (a caller that must know the outcome shields its wait).

Reads and writes of one batch come from callers that were waiting at the same time, so no order
between them was promised; reads go first, in a deferred transaction that takes no write lock,
so that another process holding the database's write lock delays only the writes. Writes marked
``late`` (claims) go after the batch's others, so that a claim sees the jobs inserted with it.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any, TypeVar, cast

from conveyor.jobs.sqlite_thread import SQLiteThread

T = TypeVar("T")
Operation = Callable[[sqlite3.Connection], T]

MAX_BATCH = 1000  # operations per transaction: bounds how long one commit keeps the others waiting


@dataclass(slots=True, eq=False)
class _Pending:
    operation: Operation[Any]
    write: bool
    late: bool  # runs after the batch's other writes (a claim: it then sees the batch's inserts)
    # A plain asyncio future, not an anyio Event: one per statement, and the store's thread
    # answers on asyncio anyway (sqlite_thread.py). Cancelled with a caller that stops waiting.
    done: asyncio.Future[None]
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
        self._busy = False  # a batch is on the thread, or is about to be sent

    async def run(self, operation: Operation[T], *, write: bool = True, late: bool = False) -> T:
        """Run ``operation`` in a transaction shared with whatever else is queued; committed on return.

        ``write=False`` promises that the operation only reads: it then runs in a read
        transaction, which never waits for another process's write lock. ``late``: the write
        runs after the other writes of its batch.
        """
        pending = _Pending(operation, write, late, asyncio.get_running_loop().create_future())
        self._queue.append(pending)
        if not self._busy:
            self._send_soon()
        await pending.done
        return cast(T, pending.outcome())

    def _send_soon(self) -> None:
        # One turn of the event loop first: callers made ready by the same event (a submit and the
        # worker it woke) queue their operations into this batch instead of the next.
        self._busy = True
        asyncio.get_running_loop().call_soon(self._send)

    def _send(self) -> None:
        if not self._queue:
            self._busy = False
            return
        batch, self._queue = self._queue[:MAX_BATCH], self._queue[MAX_BATCH:]
        self._thread.submit(
            partial(run_batch, batch=batch, before_writes=self._before_writes),
            partial(self._sent, batch),
        )

    def _sent(self, batch: list[_Pending], failure: BaseException | None) -> None:
        """The batch is back from the thread (``failure``: the thread is gone, the store closed)."""
        for pending in batch:
            if failure is not None and not pending.finished:
                pending.error = failure
            pending.finished = True
            pending.wake()
        self._send_soon()


def run_batch(
    conn: sqlite3.Connection, batch: list[_Pending], before_writes: Callable[[], None] | None = None
) -> None:
    """On the connection's thread: the reads in one transaction, then the writes in another."""
    reads = [pending for pending in batch if not pending.write]
    writes = [pending for pending in batch if pending.write and not pending.late]
    writes += [pending for pending in batch if pending.late]
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
