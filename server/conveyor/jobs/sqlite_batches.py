"""What the group committer's batches do in the database process (``sqlite_child.py``): the
reads in one read transaction, the writes in one write transaction, one bad write rerun alone.
Nothing here imports asyncio: the database process starts on what it needs, no more.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

T = TypeVar("T")
Operation = Callable[[sqlite3.Connection], T]  # picklable: it runs in the database process
# What goes to the database process: each operation, whether it writes and whether it runs late.
Sent = tuple[Operation[Any], bool, bool]
# What comes back: each operation's result and error, in the order sent.
Outcome = tuple[Any, BaseException | None]

MAX_BATCH = 1000  # operations per transaction: bounds how long one commit keeps the others waiting


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
