"""Group commit for SQLite: concurrent callers' statements share one transaction and one fsync.

Every statement of the store is an operation (a picklable function of the sqlite3 connection)
given to ``GroupCommit.run``. Operations queue, and one turn of the event loop later (or at once,
when ``EAGER`` are queued) every queued operation goes to the database process
(``sqlite_process.py``) as one batch, which runs the reads in one read transaction and the
writes in one write transaction. Batches are not held back while one runs: the database process
runs together, as one batch, all those that arrived while it was busy, so one commit serves
every caller that waited meanwhile, and the event loop goes on running tasks while SQLite works.
A caller gets its result only after the transaction holding its operation has committed, so
"committed before it returns" holds for every caller, at one commit per batch instead of one per
statement. No caller leads a batch or waits for others to send it, so a caller that is cancelled
while it waits stalls nobody: its operation is sent and commits, and only its answer is dropped
(a caller that must know the outcome shields its wait).

Reads and writes of one batch come from callers that were waiting at the same time, so no order
between them was promised; reads go first, in a deferred transaction that takes no write lock,
so that another process holding the database's write lock delays only the writes. Writes marked
``late`` (claims) go after the batch's others, so that a claim sees the jobs inserted with it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any, TypeVar, cast

from conveyor.jobs.sqlite_batches import MAX_BATCH, Batch, Operation, Outcome
from conveyor.jobs.sqlite_process import SQLiteProcess

T = TypeVar("T")
# A batch this large goes at once, not at the end of the loop's turn: SQLite starts on it while
# the loop runs the turn's other tasks. A turn that wakes every task (each waited for the same
# commit) would otherwise leave SQLite idle while the loop runs them all, and then the loop idle
# while SQLite runs their one batch, turn after turn.
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
