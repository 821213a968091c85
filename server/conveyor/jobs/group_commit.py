"""Group commit for SQLite: concurrent callers' statements share one transaction and one fsync.

Every statement of the store is an operation (a picklable function of the sqlite3 connection)
given to ``GroupCommit.run``. Operations queue, and one turn of the event loop later every queued
operation goes to the database process (``sqlite_process.py``) as one batch, which runs the
reads in one read transaction and the writes in one write transaction. Batches are not held back
while one runs: the database process runs together, as one batch, all those that arrived while it
was busy, so one commit serves every caller that waited meanwhile, and the event loop goes on
running tasks while SQLite works. A caller gets its result only after the transaction holding its
operation has committed, so "committed before it returns" holds for every caller, at one commit
per batch instead of one per statement. The batches are sent from event-loop callbacks, not by a
leading caller, so a caller that is cancelled while it waits stalls nobody: its operation is sent
and commits, and only its answer is dropped (a caller that must know the outcome shields its
wait).

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

from conveyor.jobs.sqlite_process import SQLiteProcess

T = TypeVar("T")
Operation = Callable[[sqlite3.Connection], T]  # picklable: it runs in the database process

MAX_BATCH = 1000  # operations per transaction: bounds how long one commit keeps the others waiting
EAGER = 16


@dataclass(slots=True, eq=False)
class _Pending:
    operation: Operation[Any]
    write: bool
    late: bool  # runs after the batch's other writes (a claim: it then sees the batch's inserts)
    # A plain asyncio future, not an anyio Event: one per statement. Cancelled with a caller
    # that stops waiting.
    done: asyncio.Future[None]
    result: Any = None
    error: BaseException | None = None

    def wake(self) -> None:
        if not self.done.done():
            self.done.set_result(None)

    def outcome(self) -> Any:
        if self.error is not None:
            raise self.error
        return self.result


# What goes to the database process: each operation, whether it writes and whether it runs late.
Sent = tuple[Operation[Any], bool, bool]
# What comes back: each operation's result and error, in the order sent.
Outcome = tuple[Any, BaseException | None]


class GroupCommit:
    def __init__(self, process: SQLiteProcess, *, before_writes: Callable[[], None] | None = None) -> None:
        """``before_writes`` (picklable) runs in the database process before each write
        transaction; if it raises, that batch's writes fail with its exception, and nothing is
        written."""
        self._process = process
        self.before_writes = before_writes
        self._queue: list[_Pending] = []
        self._scheduled = False  # a send is due on the next turn of the event loop

    async def run(self, operation: Operation[T], *, write: bool = True, late: bool = False) -> T:
        """Run ``operation`` in a transaction shared with whatever else is queued; committed on return.

        ``write=False`` promises that the operation only reads: it then runs in a read
        transaction, which never waits for another process's write lock. ``late``: the write
        runs after the other writes of its batch.
        """
        pending = _Pending(operation, write, late, asyncio.get_running_loop().create_future())
        self._queue.append(pending)
        if len(self._queue) >= EAGER:
            self._send()
        elif not self._scheduled:
            # One turn of the event loop first: callers made ready by the same event (a submit
            # and the worker it woke) queue their operations into this batch instead of the next.
            self._scheduled = True
            asyncio.get_running_loop().call_soon(self._send)
        await pending.done
        return cast(T, pending.outcome())

    def _send(self) -> None:
        self._scheduled = False
        while self._queue:
            batch, self._queue = self._queue[:MAX_BATCH], self._queue[MAX_BATCH:]
            sent = [(pending.operation, pending.write, pending.late) for pending in batch]
            self._process.submit(Batch(sent, self.before_writes), partial(self._answered, batch))

    @staticmethod
    def _answered(
        batch: list[_Pending], outcomes: list[Outcome] | None, failure: BaseException | None
    ) -> None:
        """The batch is back (``failure``: the process is gone)."""
        for at, pending in enumerate(batch):
            if outcomes is None:
                pending.error = failure or RuntimeError("the database process sent no answer")
            else:
                pending.result, pending.error = outcomes[at]
            pending.wake()


@dataclass(slots=True)
class Batch:
    """A batch as it goes to the database process, where it runs as a call (``run_batch``)."""

    sent: list[Sent]
    before_writes: Callable[[], None] | None

    def __call__(self, conn: sqlite3.Connection) -> list[Outcome]:
        return run_batch(conn, self.sent, self.before_writes)

    def __len__(self) -> int:
        return len(self.sent)

    def __reduce__(self) -> tuple[Any, ...]:
        return Batch, (self.sent, self.before_writes)  # not the dataclass's slower state pickling


def run_together(conn: sqlite3.Connection, batches: list[Batch]) -> list[list[Outcome]]:
    """Batches that were waiting in the database process at once, run as one: their callers
    were all waiting, so none was promised an order; each batch's outcomes, in order."""
    outcomes = run_batch(conn, [sent for batch in batches for sent in batch.sent], batches[-1].before_writes)
    split, start = [], 0
    for batch in batches:
        split.append(outcomes[start : start + len(batch)])
        start += len(batch)
    return split


def run_batch(
    conn: sqlite3.Connection, sent: list[Sent], before_writes: Callable[[], None] | None = None
) -> list[Outcome]:
    """In the database process: the reads in one transaction, then the writes in another."""
    batch = [_Run(operation, write, late) for operation, write, late in sent]
    reads = [run for run in batch if not run.write]
    writes = [run for run in batch if run.write and not run.late]
    writes += [run for run in batch if run.late]
    if reads:
        _run_reads(conn, reads)
    if writes:
        try:
            if before_writes is not None:
                before_writes()
        except Exception as exc:
            for run in writes:
                run.error = exc
        else:
            _run_writes(conn, writes)
    return [(run.result, run.error) for run in batch]


@dataclass(slots=True, eq=False)
class _Run:
    operation: Operation[Any]
    write: bool
    late: bool
    result: Any = None
    error: BaseException | None = None


def _run_reads(conn: sqlite3.Connection, reads: list[_Run]) -> None:
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


def _run_writes(conn: sqlite3.Connection, writes: list[_Run]) -> None:
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


def _run_alone(conn: sqlite3.Connection, pending: _Run) -> None:
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
