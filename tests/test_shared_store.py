"""Several runtimes on one database, as several processes share it: each has its own store
(connections, change watch), so each is another process as far as the database, the change watch
and the fencing go. What every store must do runs on SQLite and on PostgreSQL; a busy SQLite file
is SQLite's own. (The same behaviour across real processes is in test_processes.py.)"""

from __future__ import annotations

import logging
import sqlite3
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread
import pytest
from mcp import Client
from mcp.server.subscriptions import ResourceUpdated
from mcp.shared.exceptions import MCPDeprecationWarning

from conveyor.errors import StoreUnavailable
from conveyor.jobs.models import Job, JobStatus, now_ms
from conveyor.mcp_server import build_server
from conveyor.mcp_server.resources import job_uri
from conveyor.registry import Registry
from conveyor.runtime import Runtime, open_runtime
from conveyor.schemas import JobView
from conveyor.settings import Settings
from tests import toolkits
from tests.conftest import make_settings
from tests.http_helpers import error_of
from tests.live_server import live_server
from tests.webhook_receiver import webhook_receiver

pytestmark = [pytest.mark.anyio, pytest.mark.usefixtures("fresh_toolkit_events")]

OWNER = "alice"


@pytest.fixture
def settings(tmp_path: Path, database: str) -> Settings:
    return make_settings(tmp_path, db=database)


@asynccontextmanager
async def front_and_worker(settings: Settings) -> AsyncIterator[tuple[Runtime, Runtime]]:
    """A front door that runs no jobs, and a worker that runs one at a time: two stores on one file."""
    async with (
        open_runtime(settings, run_workers=False) as front,
        open_runtime(settings.model_copy(update={"concurrency": 1})) as worker,
    ):
        yield front, worker


@contextmanager
def write_lock_held_elsewhere(db: str) -> Iterator[sqlite3.Connection]:
    """Another process's write transaction, holding the database's write lock until the block ends."""
    other = sqlite3.connect(db, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    try:
        yield other
    finally:
        other.execute("ROLLBACK")
        other.close()


async def wait_for_sync_start() -> None:
    with anyio.fail_after(5):
        assert await anyio.to_thread.run_sync(toolkits.sync_started.wait, 5, abandon_on_cancel=True)


# -- changes seen across processes ------------------------------------------------------------


async def test_a_waiter_sees_the_end_of_a_job_another_process_ran_at_once(settings: Settings) -> None:
    async with front_and_worker(settings) as (front, _worker):
        job = await front.engine.submit("demo_sleep", {"seconds": 0.2, "steps": 2}, owner=OWNER)
        with anyio.fail_after(5):
            done = await front.engine.wait(job.job_id, owner=OWNER, timeout_s=5)
        seen_at = now_ms()
    assert done.status is JobStatus.COMPLETED
    assert done.result == {"slept_seconds": 0.2, "steps": 2}
    assert done.completed_at is not None
    # The change watch looks every 50 ms; waiters used to re-read the store every 2 s.
    assert seen_at - done.completed_at < 500


async def test_progress_made_in_another_process_reaches_this_ones_subscribers(settings: Settings) -> None:
    async with front_and_worker(settings) as (front, _worker):
        states: list[Job] = []
        job = await front.engine.submit("demo_sleep", {"seconds": 0.3, "steps": 3}, owner=OWNER)
        with front.events.subscribe(job.job_id) as updates, anyio.fail_after(5):
            while not (state := await updates.next()).status.terminal:
                states.append(state)
    assert any(state.status is JobStatus.RUNNING for state in states)
    assert any(state.progress and state.progress.get("message") for state in states)
    assert state.status is JobStatus.COMPLETED


async def test_a_job_submitted_in_one_process_wakes_a_worker_of_another_without_polling(
    settings: Settings,
) -> None:
    # A sweep interval of an hour: only the change watch can wake the worker.
    settings = settings.model_copy(update={"sweep_interval_seconds": 3600})
    async with front_and_worker(settings) as (front, _worker):
        job = await front.engine.submit("demo_echo", {"text": "hi"}, owner=OWNER)
        with anyio.fail_after(5):
            done = await front.engine.wait(job.job_id, owner=OWNER, timeout_s=5)
    assert done.status is JobStatus.COMPLETED
    assert done.result == "hi"


# -- cancellation across processes ------------------------------------------------------------


async def test_a_cancel_asked_in_one_process_stops_the_run_in_another_within_a_second(
    settings: Settings,
) -> None:
    async with front_and_worker(settings) as (front, _worker):
        job = await front.engine.submit("testkit_hold_observed", {}, owner=OWNER)
        with anyio.fail_after(5):
            await toolkits.started.wait()
        asked = time.monotonic()
        with anyio.fail_after(5):
            canceled = await front.engine.cancel(job.job_id, owner=OWNER)
        answered = time.monotonic() - asked
        assert toolkits.interrupted.is_set()
    assert canceled.status is JobStatus.CANCELED
    assert canceled.error is not None
    assert canceled.error["code"] == "CANCELED"
    assert answered < 1.0


async def test_a_non_cancellable_job_running_elsewhere_still_refuses_a_cancel(settings: Settings) -> None:
    from conveyor.errors import CannotCancelRunning

    async with front_and_worker(settings) as (front, _worker):
        job = await front.engine.submit("testkit_hold_uncancellable", {}, owner=OWNER)
        with anyio.fail_after(5):
            await toolkits.started.wait()
        with pytest.raises(CannotCancelRunning):
            await front.engine.cancel(job.job_id, owner=OWNER)
        toolkits.release.set()
        with anyio.fail_after(5):
            done = await front.engine.wait(job.job_id, owner=OWNER, timeout_s=5)
    assert done.status is JobStatus.COMPLETED


async def test_a_sync_tool_that_checks_stops_when_its_job_is_canceled_from_another_process(
    settings: Settings,
) -> None:
    async with front_and_worker(settings) as (front, _worker):
        job = await front.engine.submit("testkit_sync_checking", {}, owner=OWNER)
        await wait_for_sync_start()
        with anyio.fail_after(5):
            canceled = await front.engine.cancel(job.job_id, owner=OWNER)
    assert canceled.status is JobStatus.CANCELED


async def test_a_sync_tool_that_never_checks_shows_its_cancel_requested_until_it_returns(
    settings: Settings,
) -> None:
    async with open_runtime(settings) as runtime:
        runtime.engine.config = replace(runtime.engine.config, cancel_wait_s=0.2)  # answer before it returns
        job = await runtime.engine.submit("testkit_sync_unchecking", {}, owner=OWNER)
        await wait_for_sync_start()
        with anyio.fail_after(5):
            pending = await runtime.engine.cancel(job.job_id, owner=OWNER)
        assert pending.status is JobStatus.RUNNING  # the thread still runs: never shown as done
        assert pending.cancel_requested_at is not None
        assert JobView.of(pending)["cancel_requested_at"] == pending.cancel_requested_at // 1000
        toolkits.sync_release.set()
        with anyio.fail_after(5):
            ended = await runtime.engine.wait(job.job_id, owner=OWNER, timeout_s=5)
    assert ended.status is JobStatus.CANCELED
    assert "cancel_requested_at" not in JobView.of(ended)


# -- a busy database -------------------------------------------------------------------------


async def test_a_submit_that_cannot_commit_in_time_is_store_unavailable_and_commits_nothing(
    tmp_path: Path,
) -> None:
    settings = make_settings(tmp_path, store_write_timeout_seconds=0.3)
    async with open_runtime(settings, run_workers=False) as runtime:
        with write_lock_held_elsewhere(settings.db), pytest.raises(StoreUnavailable) as caught:
            await runtime.engine.submit("demo_echo", {"text": "x"}, owner=OWNER)
        assert caught.value.code == "STORE_UNAVAILABLE"
        assert caught.value.retryable
        assert caught.value.extra["retry_after"] == 1
        assert (await runtime.engine.list(owner=None))[1] == 0


async def test_rest_answers_a_busy_database_with_503_and_retry_after(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, store_write_timeout_seconds=0.3)
    async with live_server(settings) as server, server.client(server.admin_key) as http:
        with write_lock_held_elsewhere(settings.db):
            response = await http.post("/jobs/submit", json={"tool": "demo_echo", "arguments": {"text": "x"}})
        error = error_of(response, 503, "STORE_UNAVAILABLE")
        assert error["retryable"] is True
        assert response.headers["retry-after"] == "1"
        listed = (await http.get("/jobs")).json()
    assert listed["pagination"]["total"] == 0


class _Signal(logging.Handler):
    """Sets ``seen`` when a log record with this action is emitted."""

    def __init__(self, action: str) -> None:
        super().__init__()
        self.action = action
        self.seen = anyio.Event()

    def emit(self, record: logging.LogRecord) -> None:
        if getattr(record, "action", None) == self.action:
            self.seen.set()


async def test_a_finish_that_meets_a_busy_database_is_retried_and_the_run_ends_completed(
    tmp_path: Path,
) -> None:
    settings = make_settings(tmp_path, store_write_timeout_seconds=0.1)
    retried = _Signal("job.write_retry")
    engine_log = logging.getLogger("conveyor.jobs")
    level = engine_log.level
    engine_log.addHandler(retried)
    engine_log.setLevel(logging.INFO)
    try:
        async with open_runtime(settings) as runtime:
            job = await runtime.engine.submit("testkit_hold", {}, owner=OWNER)
            with anyio.fail_after(5):
                await toolkits.started.wait()
            with write_lock_held_elsewhere(settings.db):
                toolkits.release.set()
                with anyio.fail_after(5):
                    await retried.seen.wait()  # the finish met the lock, and will try again
            with anyio.fail_after(5):
                done = await runtime.engine.wait(job.job_id, owner=OWNER, timeout_s=5)
    finally:
        engine_log.removeHandler(retried)
        engine_log.setLevel(level)
    assert done.status is JobStatus.COMPLETED
    assert done.result == "released"
    assert done.attempts == 1


async def test_reads_do_not_wait_for_another_process_holding_the_write_lock(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, store_write_timeout_seconds=0.1)
    async with open_runtime(settings, run_workers=False) as runtime:
        job = await runtime.engine.submit("demo_echo", {"text": "x"}, owner=OWNER)
        with write_lock_held_elsewhere(settings.db):
            assert (await runtime.engine.get(job.job_id, owner=OWNER)).status is JobStatus.QUEUED
            jobs, total = await runtime.engine.list(owner=OWNER)
    assert [j.job_id for j in jobs] == [job.job_id]
    assert total == 1


# -- MCP notifications and webhooks of jobs another process runs ------------------------------


async def test_2025_resource_subscribers_hear_the_changes_of_a_job_another_process_runs(
    settings: Settings,
) -> None:
    async with front_and_worker(settings) as (front, _worker):
        finished = anyio.Event()
        updates: list[str] = []

        async def on_message(message: Any) -> None:
            updated = getattr(getattr(message, "params", None), "uri", None)
            if updated is not None:
                updates.append(str(updated))
                if (await front.engine.get(job.job_id, owner=None)).status.terminal:
                    finished.set()

        job = await front.engine.submit("testkit_hold", {}, owner="local")
        async with Client(build_server(front), mode="legacy", message_handler=on_message) as client:
            with anyio.fail_after(10):
                await toolkits.started.wait()
                with pytest.warns(MCPDeprecationWarning):
                    await client.subscribe_resource(job_uri(job.job_id))
                toolkits.release.set()
                await finished.wait()
    assert set(updates) == {job_uri(job.job_id)}


async def test_2026_listen_streams_carry_the_changes_of_a_job_another_process_runs(
    settings: Settings,
) -> None:
    async with front_and_worker(settings) as (front, _worker):
        job = await front.engine.submit("testkit_hold", {}, owner="local")
        async with (
            Client(build_server(front), mode="auto") as client,
            client.listen(resource_subscriptions=[job_uri(job.job_id)]) as subscription,
        ):
            with anyio.fail_after(10):
                await toolkits.started.wait()
                toolkits.release.set()
                async for event in subscription:
                    assert isinstance(event, ResourceUpdated)
                    if (await front.engine.get(job.job_id, owner=None)).status.terminal:
                        break
        assert event.uri == job_uri(job.job_id)


async def test_a_job_canceled_by_a_front_door_that_runs_no_jobs_has_its_webhook_delivered_by_a_worker(
    settings: Settings,
) -> None:
    # An hour between the deliverer's own looks at the outbox: only the change watch wakes it.
    settings = settings.model_copy(
        update={"webhook_allow_private_addresses": True, "sweep_interval_seconds": 3600}
    )
    async with webhook_receiver() as receiver, front_and_worker(settings) as (front, _worker):
        held = await front.engine.submit("testkit_hold", {}, owner=OWNER)  # the worker's one slot
        with anyio.fail_after(5):
            await toolkits.started.wait()
        queued = await front.engine.submit("demo_echo", {"text": "x"}, owner=OWNER, webhook_url=receiver.url)
        canceled = await front.engine.cancel(queued.job_id, owner=OWNER)
        [request] = await receiver.received(1)
        toolkits.release.set()
        await front.engine.wait(held.job_id, owner=OWNER, timeout_s=5)
    assert canceled.status is JobStatus.CANCELED
    assert request.headers["x-conveyor-event"] == "job.canceled"
    assert request.json()["job"]["job_id"] == queued.job_id


# -- which workers run ------------------------------------------------------------------------


async def test_a_queued_job_that_no_running_worker_can_run_says_so_and_runs_once_one_can(
    settings: Settings,
) -> None:
    demo_only = Registry.load(("conveyor_toolkits.demo:toolkit",), entry_points_enabled=False)
    async with open_runtime(settings, run_workers=False) as front:
        front.engine.config = replace(front.engine.config, explain_wait_after_ms=0)
        async with open_runtime(settings, registry=demo_only) as demo_worker:
            stuck = await front.engine.submit("testkit_hold", {}, owner=OWNER)
            runnable = await front.engine.submit("demo_echo", {"text": "x"}, owner=OWNER)
            with anyio.fail_after(5):
                done = await front.engine.wait(runnable.job_id, owner=OWNER, timeout_s=5)
            waiting = await front.engine.get(stuck.job_id, owner=OWNER)
            workers = await front.engine.live_workers()
        assert done.status is JobStatus.COMPLETED
        assert waiting.status is JobStatus.QUEUED
        assert waiting.status_message is not None
        assert "testkit_hold" in waiting.status_message
        assert JobView.of(waiting)["status_message"] == waiting.status_message
        assert [worker.worker_id for worker in workers] == [demo_worker.engine.config.worker_id]
        assert "testkit_hold" not in workers[0].tools

        async with open_runtime(settings):  # a worker with every toolkit
            with anyio.fail_after(5):
                await toolkits.started.wait()
                toolkits.release.set()
                ran = await front.engine.wait(stuck.job_id, owner=OWNER, timeout_s=5)
    assert ran.status is JobStatus.COMPLETED
    assert "status_message" not in JobView.of(ran)
