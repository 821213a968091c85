"""Group commit and the store's plumbing, driven directly on a real SQLite file."""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import AsyncIterator
from pathlib import Path

import anyio
import anyio.to_thread
import pytest

from conveyor.jobs.group_commit import GroupCommit
from conveyor.jobs.models import JobStatus
from conveyor.jobs.queries import load_migrations
from conveyor.jobs.sqlite_store import SQLiteJobStore
from conveyor.jobs.sqlite_thread import SQLiteThread

pytestmark = pytest.mark.anyio


class Traced:
    """A connection factory that records the transactions each connection begins."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.begun: list[str] = []

    def __call__(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=0.1)
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("CREATE TABLE IF NOT EXISTS t (x INTEGER UNIQUE)")
        conn.set_trace_callback(lambda sql: sql.startswith("BEGIN") and self.begun.append(sql))
        return conn


@pytest.fixture
async def traced(tmp_path: Path) -> AsyncIterator[tuple[GroupCommit, Traced]]:
    connect = Traced(tmp_path / "group.db")
    thread = SQLiteThread(connect)
    await thread.start()
    try:
        yield GroupCommit(thread), connect
    finally:
        await thread.close()


def insert(value: int):  # type: ignore[no-untyped-def]
    return lambda conn: conn.execute("INSERT INTO t (x) VALUES (?)", (value,)).rowcount


def values(conn: sqlite3.Connection) -> list[int]:
    return [row[0] for row in conn.execute("SELECT x FROM t ORDER BY x")]


async def test_operations_queued_while_a_batch_runs_share_the_next_transaction(
    traced: tuple[GroupCommit, Traced],
) -> None:
    group, connect = traced
    in_flight, go_on = threading.Event(), threading.Event()

    def slow_first(conn: sqlite3.Connection) -> int:
        in_flight.set()
        go_on.wait(5)
        return int(conn.execute("INSERT INTO t (x) VALUES (0)").rowcount)

    results: dict[int, int] = {}

    async def run(value: int) -> None:
        results[value] = await group.run(insert(value))

    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            tg.start_soon(lambda: group.run(slow_first))
            assert await anyio.to_thread.run_sync(in_flight.wait, 5)
            for value in range(1, 6):  # they queue behind the batch in flight
                tg.start_soon(run, value)
            await anyio.wait_all_tasks_blocked()
            go_on.set()
        assert await group.run(values, write=False) == [0, 1, 2, 3, 4, 5]
    assert results == dict.fromkeys(range(1, 6), 1)
    # The first batch, then one for the five that queued meanwhile (sent as the first came back).
    assert connect.begun.count("BEGIN IMMEDIATE") == 2


async def test_a_late_write_runs_after_the_other_writes_of_its_batch(
    traced: tuple[GroupCommit, Traced],
) -> None:
    # A claim is late: queued before an insert of the same batch, it still sees the inserted job.
    group, _ = traced
    in_flight, go_on = threading.Event(), threading.Event()

    def slow(conn: sqlite3.Connection) -> None:
        in_flight.set()
        go_on.wait(5)

    def count_rows(conn: sqlite3.Connection) -> int:
        return int(conn.execute("SELECT COUNT(*) FROM t").fetchone()[0])

    counted: list[int] = []

    async def late_count() -> None:
        counted.append(await group.run(count_rows, late=True))

    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            tg.start_soon(lambda: group.run(slow))
            assert await anyio.to_thread.run_sync(in_flight.wait, 5)
            tg.start_soon(late_count)  # queued first, behind the batch in flight
            await anyio.wait_all_tasks_blocked()
            for value in (1, 2, 3):
                tg.start_soon(group.run, insert(value))
            await anyio.wait_all_tasks_blocked()
            go_on.set()
    assert counted == [3]


async def test_one_failing_operation_fails_alone_and_the_rest_of_its_batch_commits(
    traced: tuple[GroupCommit, Traced],
) -> None:
    group, connect = traced
    await group.run(insert(7))
    outcomes: dict[int, object] = {}

    async def run(value: int) -> None:
        try:
            outcomes[value] = await group.run(insert(value))
        except sqlite3.IntegrityError as exc:
            outcomes[value] = exc

    connect.begun.clear()
    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            for value in (6, 7, 8):  # 7 breaks the unique constraint
                tg.start_soon(run, value)
        assert await group.run(values, write=False) == [6, 7, 8]
    assert outcomes[6] == 1
    assert outcomes[8] == 1
    assert isinstance(outcomes[7], sqlite3.IntegrityError)
    # One shared attempt, rolled back, then each operation in a transaction of its own.
    assert connect.begun.count("BEGIN IMMEDIATE") == 4


async def test_a_cancelled_caller_does_not_stall_the_callers_queued_behind_it(
    traced: tuple[GroupCommit, Traced],
) -> None:
    group, _ = traced
    in_flight, go_on = threading.Event(), threading.Event()

    def slow(conn: sqlite3.Connection) -> None:
        in_flight.set()
        go_on.wait(5)

    impatient = anyio.CancelScope()

    async def impatient_insert() -> None:
        with impatient:
            await group.run(insert(1))

    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            tg.start_soon(lambda: group.run(slow))
            assert await anyio.to_thread.run_sync(in_flight.wait, 5)
            tg.start_soon(impatient_insert)
            tg.start_soon(lambda: group.run(insert(2)))
            await anyio.wait_all_tasks_blocked()
            impatient.cancel()  # its caller gives up waiting; its operation was queued, and stays
            go_on.set()
        assert await group.run(values, write=False) == [1, 2]


async def test_reads_run_while_another_connection_holds_the_write_lock(
    traced: tuple[GroupCommit, Traced],
) -> None:
    group, connect = traced
    await group.run(insert(1))
    other = sqlite3.connect(connect.path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    try:
        with anyio.fail_after(2):
            assert await group.run(values, write=False) == [1]
        with pytest.raises(sqlite3.OperationalError, match="locked"):
            await group.run(insert(2))
    finally:
        other.execute("ROLLBACK")
        other.close()


async def test_a_database_made_by_the_first_schema_upgrades_to_the_latest_with_its_jobs(
    tmp_path: Path,
) -> None:
    path = tmp_path / "old.db"
    migrations = load_migrations("sqlite")
    first_version, first_script = migrations[0]
    old = sqlite3.connect(path)
    old.executescript(first_script)
    old.execute(f"PRAGMA user_version = {first_version}")
    old.execute(
        "INSERT INTO jobs (job_id, tool, arguments, owner, status, created_at, run_after)"
        " VALUES ('job_old', 'demo_echo', ?, 'alice', 'queued', 1000, 1000)",
        (json.dumps({"text": "from v1"}),),
    )
    old.commit()
    old.close()

    store = SQLiteJobStore(path)
    await store.open()
    try:
        job = await store.get("job_old")
        claimed = await store.claim_next(
            worker="w", queues=None, tools=["demo_echo"], now=2000, lease_expires_at=3000
        )
    finally:
        await store.close()
    with sqlite3.connect(path) as conn:
        version = conn.execute("PRAGMA user_version").fetchone()[0]
    assert version == migrations[-1][0]
    assert job is not None
    assert (job.status, job.arguments, job.owner) == (JobStatus.QUEUED, {"text": "from v1"}, "alice")
    assert [job.job_id for job in claimed] == ["job_old"]
