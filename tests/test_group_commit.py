"""Group commit and the store's plumbing, driven directly on a real SQLite file, with the
connection in its database process as the store has it."""

from __future__ import annotations

import json
import os
import sqlite3
from collections.abc import AsyncIterator, Awaitable, Callable
from functools import partial
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread
import pytest

from conveyor.jobs.group_commit import GroupCommit
from conveyor.jobs.models import JobStatus
from conveyor.jobs.queries import load_migrations
from conveyor.jobs.sqlite_process import SQLiteProcess
from conveyor.jobs.sqlite_store import SQLiteJobStore
from tests import group_commit_ops as ops

pytestmark = pytest.mark.anyio
REPO = Path(__file__).resolve().parent.parent


class Traced:
    """The test database and the file its connection writes each BEGIN to."""

    def __init__(self, tmp_path: Path) -> None:
        self.path = tmp_path / "group.db"
        self.trace = tmp_path / "begun.txt"

    def begun(self, kind: str) -> int:
        return self.trace.read_text().splitlines().count(kind) if self.trace.exists() else 0

    def forget(self) -> None:
        self.trace.write_text("")


@pytest.fixture
async def traced(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[tuple[GroupCommit, Traced]]:
    monkeypatch.setenv("PYTHONPATH", str(REPO))  # the database process imports tests.group_commit_ops
    traced = Traced(tmp_path)
    process = SQLiteProcess(partial(ops.traced_connect, str(traced.path), str(traced.trace)))
    await process.start()
    try:
        yield GroupCommit(process), traced
    finally:
        await process.close()


class Gate:
    """Holds a batch in the database process until the test lets it go (two FIFOs)."""

    def __init__(self, tmp_path: Path) -> None:
        self.in_flight, self.go_on = tmp_path / "in_flight", tmp_path / "go_on"
        os.mkfifo(self.in_flight)
        os.mkfifo(self.go_on)

    def operation(self, value: int | None = None) -> Callable[[sqlite3.Connection], int]:
        return partial(ops.gate, str(self.in_flight), str(self.go_on), value)

    async def running(self) -> None:
        await anyio.to_thread.run_sync(self.in_flight.read_text)

    async def release(self) -> None:
        await anyio.to_thread.run_sync(self.go_on.write_text, "go\n")


def start(tg: anyio.abc.TaskGroup, call: Awaitable[Any]) -> None:
    async def run() -> None:
        await call

    tg.start_soon(run)


async def test_operations_queued_while_a_batch_runs_share_the_next_transaction(
    traced: tuple[GroupCommit, Traced], tmp_path: Path
) -> None:
    group, trace = traced
    gate = Gate(tmp_path)
    results: dict[int, int] = {}

    async def run(value: int) -> None:
        results[value] = await group.run(partial(ops.insert, value))

    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            start(tg, group.run(gate.operation(0)))
            await gate.running()
            for value in range(1, 6):  # they queue behind the batch in flight
                tg.start_soon(run, value)
            await anyio.wait_all_tasks_blocked()
            await gate.release()
        assert await group.run(ops.values, write=False) == [0, 1, 2, 3, 4, 5]
    assert results == dict.fromkeys(range(1, 6), 1)
    # The first batch, then one for the five that queued meanwhile.
    assert trace.begun("BEGIN IMMEDIATE") == 2


async def test_a_late_write_runs_after_the_other_writes_of_its_batch(
    traced: tuple[GroupCommit, Traced], tmp_path: Path
) -> None:
    # A claim is late: queued before an insert of the same batch, it still sees the inserted job.
    group, _ = traced
    gate = Gate(tmp_path)
    counted: list[int] = []

    async def late_count() -> None:
        counted.append(await group.run(ops.count_rows, late=True))

    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            start(tg, group.run(gate.operation()))
            await gate.running()
            tg.start_soon(late_count)  # queued first, behind the batch in flight
            await anyio.wait_all_tasks_blocked()
            for value in (1, 2, 3):
                start(tg, group.run(partial(ops.insert, value)))
            await anyio.wait_all_tasks_blocked()
            await gate.release()
    assert counted == [3]


async def test_one_failing_operation_fails_alone_and_the_rest_of_its_batch_commits(
    traced: tuple[GroupCommit, Traced],
) -> None:
    group, trace = traced
    await group.run(partial(ops.insert, 7))
    outcomes: dict[int, object] = {}

    async def run(value: int) -> None:
        try:
            outcomes[value] = await group.run(partial(ops.insert, value))
        except sqlite3.IntegrityError as exc:
            outcomes[value] = exc

    trace.forget()
    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            for value in (6, 7, 8):  # 7 breaks the unique constraint
                tg.start_soon(run, value)
        assert await group.run(ops.values, write=False) == [6, 7, 8]
    assert outcomes[6] == 1
    assert outcomes[8] == 1
    assert isinstance(outcomes[7], sqlite3.IntegrityError)
    # One shared attempt, rolled back, then each operation in a transaction of its own.
    assert trace.begun("BEGIN IMMEDIATE") == 4


async def test_a_cancelled_caller_does_not_stall_the_callers_queued_behind_it(
    traced: tuple[GroupCommit, Traced], tmp_path: Path
) -> None:
    group, _ = traced
    gate = Gate(tmp_path)
    impatient = anyio.CancelScope()

    async def impatient_insert() -> None:
        with impatient:
            await group.run(partial(ops.insert, 1))

    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            start(tg, group.run(gate.operation()))
            await gate.running()
            tg.start_soon(impatient_insert)
            start(tg, group.run(partial(ops.insert, 2)))
            await anyio.wait_all_tasks_blocked()
            impatient.cancel()  # its caller gives up waiting; its operation was queued, and stays
            await gate.release()
        assert await group.run(ops.values, write=False) == [1, 2]


async def test_reads_run_while_another_connection_holds_the_write_lock(
    traced: tuple[GroupCommit, Traced],
) -> None:
    group, trace = traced
    await group.run(partial(ops.insert, 1))
    other = sqlite3.connect(trace.path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    try:
        with anyio.fail_after(2):
            assert await group.run(ops.values, write=False) == [1]
        with pytest.raises(sqlite3.OperationalError, match="locked"):
            await group.run(partial(ops.insert, 2))
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
