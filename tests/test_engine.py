"""The job engine, its store and the executor, driven directly (no MCP in between): every test
runs on SQLite and on PostgreSQL."""

from __future__ import annotations

import re
import secrets
import threading
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import pytest

from conveyor.errors import (
    CannotCancelRunning,
    ErrorCode,
    ExecutionError,
    ExecutionTimeout,
    IdempotencyConflict,
    InvalidArguments,
    JobNotFound,
    PayloadTooLarge,
    ToolNotFound,
)
from conveyor.executor import Executor
from conveyor.jobs.models import Job, JobStatus, now_ms
from conveyor.progress import Progress
from conveyor.runtime import Runtime, open_runtime
from conveyor.schemas import JobView
from conveyor.settings import Settings
from tests import databases, toolkits
from tests.conftest import make_settings

pytestmark = [pytest.mark.anyio, pytest.mark.usefixtures("fresh_toolkit_events")]

JOB_ID = re.compile(r"^job_[0-9a-f]{32}$")
OWNER = "alice"
HOUR_MS = 3_600_000


@pytest.fixture
def settings(tmp_path: Path, database: str) -> Settings:
    return make_settings(tmp_path, db=database)


@pytest.fixture
async def idle_runtime(settings: Settings) -> AsyncIterator[Runtime]:
    """A runtime without workers: submitted jobs stay queued until the test acts."""
    async with open_runtime(settings, run_workers=False) as runtime:
        yield runtime


async def run_job(
    runtime: Runtime, tool: str, arguments: dict[str, Any] | None = None, **options: Any
) -> Job:
    job = await runtime.engine.submit(tool, arguments or {}, owner=OWNER, **options)
    with anyio.fail_after(10):
        return await runtime.engine.wait(job.job_id, owner=None, timeout_s=10)


async def start_held(runtime: Runtime, tool: str = "testkit_hold") -> Job:
    job = await runtime.engine.submit(tool, {}, owner=OWNER)
    with anyio.fail_after(5):
        await toolkits.started.wait()
    return job


async def finish_held(runtime: Runtime, job: Job) -> Job:
    toolkits.release.set()
    with anyio.fail_after(5):
        done = await runtime.engine.wait(job.job_id, owner=None, timeout_s=5)
    assert done.status.terminal
    return done


def tool_names(runtime: Runtime) -> list[str]:
    return [tool.wire_name for tool in runtime.registry]


async def backdate_completion(runtime: Runtime, job_id: str, ms_ago: int) -> None:
    """Pretend a job finished ``ms_ago`` milliseconds ago (a second connection, as an operator would)."""
    sql = "UPDATE jobs SET completed_at = :completed_at WHERE job_id = :job_id"
    await databases.execute(runtime.settings.db, sql, {"completed_at": now_ms() - ms_ago, "job_id": job_id})


# -- submit ------------------------------------------------------------------------------


async def test_submit_commits_the_job_before_returning_its_id(idle_runtime: Runtime) -> None:
    job = await idle_runtime.engine.submit("demo_echo", {"text": "hi"}, owner=OWNER)
    assert JOB_ID.match(job.job_id)
    assert job.status is JobStatus.QUEUED
    stored = await idle_runtime.engine.store.get(job.job_id)
    assert stored is not None
    assert (stored.tool, stored.arguments, stored.owner) == ("demo_echo", {"text": "hi"}, OWNER)
    assert stored.queue == "default"
    assert stored.attempts == 0
    assert stored.trace_id is not None
    assert re.fullmatch(r"[0-9a-f]{32}", stored.trace_id)
    assert stored.timeout_ms == idle_runtime.settings.default_timeout_ms


async def test_job_ids_are_unguessable_and_distinct(idle_runtime: Runtime) -> None:
    ids = {
        (await idle_runtime.engine.submit("demo_echo", {"text": "x"}, owner=OWNER)).job_id for _ in range(20)
    }
    assert len(ids) == 20
    assert all(JOB_ID.match(job_id) for job_id in ids)


async def test_queued_jobs_know_their_position_in_the_queue(idle_runtime: Runtime) -> None:
    engine = idle_runtime.engine
    jobs = [await engine.submit("demo_echo", {"text": str(i)}, owner=OWNER) for i in range(3)]
    assert [job.position_in_queue for job in jobs] == [1, 2, 3]
    await engine.cancel(jobs[0].job_id, owner=OWNER)
    assert (await engine.get(jobs[2].job_id, owner=OWNER)).position_in_queue == 2
    assert "position_in_queue" not in JobView.of(await engine.get(jobs[0].job_id, owner=OWNER))


@pytest.mark.parametrize(
    ("tool", "arguments", "options", "error", "argument"),
    [
        ("demo_nope", {}, {}, ToolNotFound, None),
        ("demo_echo", {}, {}, InvalidArguments, "text"),
        ("demo_echo", {"text": 1}, {}, InvalidArguments, "text"),
        ("demo_echo", {"text": "x", "loud": True}, {}, InvalidArguments, "loud"),
        ("demo_echo", ["x"], {}, InvalidArguments, None),
        ("demo_echo", {"text": "x"}, {"timeout_ms": 0}, InvalidArguments, "timeout_ms"),
        ("demo_echo", {"text": "x"}, {"webhook_url": "file:///etc/passwd"}, InvalidArguments, "webhook_url"),
    ],
)
async def test_submit_validates_before_committing_anything(
    idle_runtime: Runtime,
    tool: str,
    arguments: Any,
    options: dict[str, Any],
    error: type[Exception],
    argument: str | None,
) -> None:
    with pytest.raises(error) as caught:
        await idle_runtime.engine.submit(tool, arguments, owner=OWNER, **options)
    if argument is not None:
        assert caught.value.extra["argument"] == argument  # type: ignore[attr-defined]
    _, total = await idle_runtime.engine.list(owner=None)
    assert total == 0


async def test_queued_jobs_survive_a_restart_and_run(settings: Settings) -> None:
    async with open_runtime(settings, run_workers=False) as runtime:
        job = await runtime.engine.submit("demo_echo", {"text": "later"}, owner=OWNER)
    async with open_runtime(settings) as runtime:
        with anyio.fail_after(5):
            done = await runtime.engine.wait(job.job_id, owner=OWNER, timeout_s=5)
    assert done.status is JobStatus.COMPLETED
    assert done.result == "later"


async def test_the_duration_estimate_comes_from_the_stored_history_after_a_restart(
    settings: Settings,
) -> None:
    async with open_runtime(settings) as runtime:
        assert (
            await runtime.engine.submit("demo_echo", {"text": "x"}, owner=OWNER)
        ).estimated_duration_ms is None
        runs = [await run_job(runtime, "demo_sleep", {"seconds": 0.01, "steps": 1}) for _ in range(2)]
    durations = [job.execution_time_ms for job in runs]
    assert all(duration is not None and duration >= 5 for duration in durations)
    async with open_runtime(settings, run_workers=False) as runtime:
        job = await runtime.engine.submit("demo_sleep", {"seconds": 0.01}, owner=OWNER)
    assert job.estimated_duration_ms == int(sum(durations) / len(durations))  # type: ignore[arg-type]


# -- idempotency -------------------------------------------------------------------------


async def test_an_idempotency_key_returns_the_same_job_for_the_same_request(idle_runtime: Runtime) -> None:
    engine = idle_runtime.engine
    first = await engine.submit("demo_echo", {"text": "x"}, owner=OWNER, idempotency_key="k")
    again = await engine.submit("demo_echo", {"text": "x"}, owner=OWNER, idempotency_key="k")
    assert again.job_id == first.job_id
    with pytest.raises(IdempotencyConflict) as caught:
        await engine.submit("demo_echo", {"text": "y"}, owner=OWNER, idempotency_key="k")
    assert caught.value.code is ErrorCode.IDEMPOTENCY_CONFLICT
    assert caught.value.extra["job_id"] == first.job_id


async def test_resubmitting_a_queued_job_by_its_key_answers_its_position(idle_runtime: Runtime) -> None:
    engine = idle_runtime.engine
    await engine.submit("demo_echo", {"text": "first"}, owner=OWNER)
    job = await engine.submit("demo_echo", {"text": "x"}, owner=OWNER, idempotency_key="k")
    again = await engine.submit("demo_echo", {"text": "x"}, owner=OWNER, idempotency_key="k")
    assert again == job
    assert again.position_in_queue == 2


async def test_idempotency_keys_belong_to_their_owner(idle_runtime: Runtime) -> None:
    engine = idle_runtime.engine
    alice = await engine.submit("demo_echo", {"text": "x"}, owner="alice", idempotency_key="k")
    bob = await engine.submit("demo_echo", {"text": "x"}, owner="bob", idempotency_key="k")
    assert alice.job_id != bob.job_id


async def test_concurrent_submits_with_one_idempotency_key_make_one_job(idle_runtime: Runtime) -> None:
    engine = idle_runtime.engine
    job_ids: list[str] = []

    async def submit() -> None:
        job = await engine.submit("demo_echo", {"text": "x"}, owner=OWNER, idempotency_key="race")
        job_ids.append(job.job_id)

    async with anyio.create_task_group() as tg:
        for _ in range(5):
            tg.start_soon(submit)
    assert len(set(job_ids)) == 1
    assert (await engine.list(owner=None))[1] == 1


async def test_a_concurrent_submit_with_the_key_but_other_arguments_is_a_conflict(
    idle_runtime: Runtime,
) -> None:
    engine = idle_runtime.engine
    outcomes: list[str] = []

    async def submit(text: str) -> None:
        try:
            await engine.submit("demo_echo", {"text": text}, owner=OWNER, idempotency_key="race")
            outcomes.append("job")
        except IdempotencyConflict:
            outcomes.append("conflict")

    async with anyio.create_task_group() as tg:
        tg.start_soon(submit, "a")
        tg.start_soon(submit, "b")
    assert sorted(outcomes) == ["conflict", "job"]


# -- owners ------------------------------------------------------------------------------


async def test_another_owners_job_is_not_found(idle_runtime: Runtime) -> None:
    engine = idle_runtime.engine
    job = await engine.submit("demo_echo", {"text": "x"}, owner="alice")
    await engine.submit("demo_echo", {"text": "y"}, owner="bob")
    for attempt in (
        engine.get(job.job_id, owner="bob"),
        engine.cancel(job.job_id, owner="bob"),
        engine.wait(job.job_id, owner="bob", timeout_s=1),
    ):
        with pytest.raises(JobNotFound):
            await attempt
    assert (await engine.get(job.job_id, owner=None)).job_id == job.job_id
    jobs, total = await engine.list(owner="alice")
    assert ([j.job_id for j in jobs], total) == ([job.job_id], 1)
    assert (await engine.list(owner=None))[1] == 2
    assert (await engine.get(job.job_id, owner="alice")).status is JobStatus.QUEUED


async def test_list_rejects_pages_out_of_bounds(idle_runtime: Runtime) -> None:
    for options, argument in [({"limit": 0}, "limit"), ({"limit": 101}, "limit"), ({"offset": -1}, "offset")]:
        with pytest.raises(InvalidArguments) as caught:
            await idle_runtime.engine.list(owner=None, **options)
        assert caught.value.extra["argument"] == argument
    assert (await idle_runtime.engine.list(owner=None, limit=100)) == ([], 0)


# -- running, progress, waiting ----------------------------------------------------------


async def test_a_running_job_persists_its_progress(runtime: Runtime) -> None:
    with runtime.events.subscribe() as updates, anyio.fail_after(5):
        job = await start_held(runtime)
        while (await updates.next()).progress is None:
            pass
    stored = await runtime.engine.store.get(job.job_id)
    assert stored is not None
    assert stored.status is JobStatus.RUNNING
    assert stored.progress == {"current_step": 1, "total_steps": 2, "percentage": 50.0, "message": "holding"}
    done = await finish_held(runtime, job)
    assert done.status is JobStatus.COMPLETED
    assert done.progress == stored.progress


async def test_wait_answers_the_current_job_when_time_runs_out(runtime: Runtime) -> None:
    job = await start_held(runtime)
    assert (await runtime.engine.wait(job.job_id, owner=OWNER, timeout_s=0)).status is JobStatus.RUNNING
    assert (await runtime.engine.wait(job.job_id, owner=OWNER, timeout_s=0.02)).status is JobStatus.RUNNING
    assert (await finish_held(runtime, job)).result == "released"


async def test_a_sync_tool_runs_in_a_worker_thread(runtime: Runtime) -> None:
    outcome = await runtime.executor.run("testkit_thread_ident", {})
    assert outcome.result != threading.get_ident()
    job = await run_job(runtime, "testkit_blocking_sum", {"numbers": [1, 2, 3, 4]})
    assert (job.status, job.result) == (JobStatus.COMPLETED, 10)


async def test_a_flaky_idempotent_job_completes_on_its_second_attempt(runtime: Runtime) -> None:
    job = await run_job(runtime, "testkit_flaky", {"key": secrets.token_hex(8)})
    assert job.status is JobStatus.COMPLETED
    assert job.attempts == 2
    assert job.result == 2
    assert job.error is None


async def test_a_timed_out_job_ends_timeout_with_execution_timeout(runtime: Runtime) -> None:
    job = await run_job(runtime, "testkit_hold", timeout_ms=10)
    assert job.status is JobStatus.TIMEOUT
    assert job.error is not None
    assert job.error["code"] == "EXECUTION_TIMEOUT"
    assert job.attempts == 1
    assert job.execution_time_ms is not None
    assert job.execution_time_ms >= 10


# -- cancel ------------------------------------------------------------------------------


async def test_cancel_a_queued_job_ends_it_at_once(idle_runtime: Runtime) -> None:
    job = await idle_runtime.engine.submit("demo_echo", {"text": "x"}, owner=OWNER)
    canceled = await idle_runtime.engine.cancel(job.job_id, owner=OWNER)
    assert canceled.status is JobStatus.CANCELED
    assert canceled.error is not None
    assert canceled.error["code"] == "CANCELED"
    assert canceled.completed_at is not None
    assert canceled.started_at is None
    claimed = await idle_runtime.engine.store.claim_next(
        worker="w",
        queues=None,
        tools=tool_names(idle_runtime),
        now=now_ms(),
        lease_expires_at=now_ms() + 1000,
    )
    assert claimed == []


async def test_cancel_a_running_cancellable_job_interrupts_the_tool(runtime: Runtime) -> None:
    job = await start_held(runtime, "testkit_hold_observed")
    with anyio.fail_after(5):
        canceled = await runtime.engine.cancel(job.job_id, owner=OWNER)
        await toolkits.interrupted.wait()
    assert canceled.status is JobStatus.CANCELED
    assert canceled.error is not None
    assert canceled.error["code"] == "CANCELED"
    assert canceled.result is None


async def test_cancel_a_running_non_cancellable_job_raises_and_the_job_runs_on(runtime: Runtime) -> None:
    job = await start_held(runtime, "testkit_hold_uncancellable")
    with pytest.raises(CannotCancelRunning) as caught:
        await runtime.engine.cancel(job.job_id, owner=OWNER)
    assert caught.value.code is ErrorCode.CANNOT_CANCEL_RUNNING
    done = await finish_held(runtime, job)
    assert (done.status, done.result) == (JobStatus.COMPLETED, "released")


async def test_a_terminal_job_never_changes(runtime: Runtime) -> None:
    done = await run_job(runtime, "demo_echo", {"text": "x"})
    store = runtime.engine.store
    assert done.status is JobStatus.COMPLETED
    assert await runtime.engine.cancel(done.job_id, owner=OWNER) == done
    assert await store.finish(done, status=JobStatus.FAILED, now=now_ms(), error={"code": "X"}) is None
    assert await store.cancel_queued(done.job_id, now=now_ms(), error={"code": "X"}) is None
    assert await store.requeue(done.job_id, attempt=done.attempts, run_after=0) is None
    await store.save_progress(done.job_id, {"percentage": 1}, attempt=done.attempts)
    await store.extend_leases(
        worker=runtime.engine.config.worker_id, job_ids=[done.job_id], lease_expires_at=now_ms()
    )
    claimed = await store.claim_next(
        worker="w", queues=None, tools=tool_names(runtime), now=now_ms(), lease_expires_at=now_ms()
    )
    assert claimed == []
    assert await store.get(done.job_id) == done

    canceled = await runtime.engine.submit("demo_echo", {"text": "y"}, owner=OWNER)
    held = await start_held(runtime)
    await runtime.engine.cancel(held.job_id, owner=OWNER)
    after = await runtime.engine.get(held.job_id, owner=OWNER)
    assert await runtime.engine.cancel(held.job_id, owner=OWNER) == after
    assert await store.finish(held, status=JobStatus.COMPLETED, now=now_ms(), result=1) is None
    assert (await runtime.engine.get(held.job_id, owner=OWNER)).status is JobStatus.CANCELED
    await runtime.engine.wait(canceled.job_id, owner=OWNER, timeout_s=5)


# -- recovery, shutdown and retention ----------------------------------------------------


async def claim_with_expired_lease(runtime: Runtime) -> Job:
    claimed = await runtime.engine.store.claim_next(
        worker="gone", queues=None, tools=tool_names(runtime), now=now_ms(), lease_expires_at=now_ms() - 1
    )
    assert len(claimed) == 1
    return claimed[0]


async def test_sweep_fails_a_lost_job_of_a_non_idempotent_tool_with_worker_lost(
    idle_runtime: Runtime,
) -> None:
    job = await idle_runtime.engine.submit("testkit_hold", {}, owner=OWNER)
    await claim_with_expired_lease(idle_runtime)
    await idle_runtime.engine.sweep()
    lost = await idle_runtime.engine.get(job.job_id, owner=OWNER)
    assert lost.status is JobStatus.FAILED
    assert lost.error is not None
    assert lost.error["code"] == "WORKER_LOST"


@pytest.mark.parametrize("tool", ["demo_sleep", "demo_echo"])
async def test_sweep_requeues_a_lost_job_of_an_idempotent_tool(idle_runtime: Runtime, tool: str) -> None:
    arguments = {"seconds": 0} if tool == "demo_sleep" else {"text": "x"}
    job = await idle_runtime.engine.submit(tool, arguments, owner=OWNER)
    await claim_with_expired_lease(idle_runtime)
    await idle_runtime.engine.sweep()
    requeued = await idle_runtime.engine.get(job.job_id, owner=OWNER)
    assert requeued.status is JobStatus.QUEUED
    assert requeued.attempts == 1
    assert requeued.started_at is None


async def test_sweep_leaves_a_job_with_a_live_lease_alone(runtime: Runtime) -> None:
    job = await start_held(runtime)
    await runtime.engine.sweep()
    assert (await runtime.engine.get(job.job_id, owner=OWNER)).status is JobStatus.RUNNING
    await finish_held(runtime, job)


async def test_a_shutdown_past_its_grace_hands_idempotent_jobs_back_uncounted_and_interrupts_the_rest(
    settings: Settings,
) -> None:
    async with open_runtime(settings) as runtime:  # grace 0: whatever runs is interrupted at once
        held = await start_held(runtime)
        with runtime.events.subscribe() as updates, anyio.fail_after(5):
            sleeping = await runtime.engine.submit("demo_sleep", {"seconds": 60, "steps": 1}, owner=OWNER)
            while (update := await updates.next()).job_id != sleeping.job_id or update.status != "running":
                pass
    async with open_runtime(settings, run_workers=False) as runtime:
        interrupted = await runtime.engine.get(held.job_id, owner=OWNER)
        assert interrupted.status is JobStatus.FAILED
        assert interrupted.error is not None
        assert interrupted.error["code"] == "INTERRUPTED"
        assert interrupted.attempts == 1
        handed_back = await runtime.engine.get(sleeping.job_id, owner=OWNER)
        assert handed_back.status is JobStatus.QUEUED
        assert handed_back.attempts == 0
        assert handed_back.position_in_queue == 1


async def test_a_shutdown_lets_running_jobs_finish_within_the_grace_period(
    tmp_path: Path, database: str
) -> None:
    settings = make_settings(tmp_path, db=database, shutdown_grace_seconds=30)
    async with open_runtime(settings) as runtime:
        held = await start_held(runtime)
        draining = runtime.engine.drain(30)

        async def release_once_draining() -> None:
            assert runtime.engine.draining  # drain() set it before its first wait, as this task started
            assert (await runtime.engine.get(held.job_id, owner=OWNER)).status is JobStatus.RUNNING
            toolkits.release.set()

        with anyio.fail_after(5):
            async with anyio.create_task_group() as tg:
                tg.start_soon(release_once_draining)
                await draining
        done = await runtime.engine.get(held.job_id, owner=OWNER)
    assert done.status is JobStatus.COMPLETED
    assert done.result == "released"


async def test_a_hurried_shutdown_skips_the_rest_of_the_grace_period(tmp_path: Path, database: str) -> None:
    settings = make_settings(tmp_path, db=database, shutdown_grace_seconds=3600)
    async with open_runtime(settings) as runtime:
        held = await start_held(runtime)
        hurry = anyio.Event()
        hurry.set()
        with anyio.fail_after(5):
            await runtime.engine.drain(3600, hurry=hurry)
        interrupted = await runtime.engine.get(held.job_id, owner=OWNER)
    assert interrupted.status is JobStatus.FAILED
    assert interrupted.error is not None
    assert interrupted.error["code"] == "INTERRUPTED"


async def test_sweep_purges_finished_jobs_older_than_the_retention(tmp_path: Path, database: str) -> None:
    settings = make_settings(tmp_path, db=database, retention_hours=1, concurrency=1)
    async with open_runtime(settings) as runtime:
        old = await run_job(runtime, "demo_echo", {"text": "old"})
        old_failure = await run_job(runtime, "demo_fail", {"message": "old"})
        recent = await run_job(runtime, "demo_echo", {"text": "recent"})
        await backdate_completion(runtime, old.job_id, 2 * HOUR_MS)
        await backdate_completion(runtime, old_failure.job_id, 2 * HOUR_MS)
        await backdate_completion(runtime, recent.job_id, HOUR_MS // 2)
        running = await start_held(runtime)
        queued = await runtime.engine.submit("demo_echo", {"text": "waiting"}, owner=OWNER)

        await runtime.engine.sweep()

        for gone in (old, old_failure):
            with pytest.raises(JobNotFound):
                await runtime.engine.get(gone.job_id, owner=None)
        assert (await runtime.engine.get(recent.job_id, owner=None)).result == "recent"
        assert (await runtime.engine.get(running.job_id, owner=None)).status is JobStatus.RUNNING
        assert (await runtime.engine.get(queued.job_id, owner=None)).status is JobStatus.QUEUED
        assert (await runtime.engine.list(owner=None))[1] == 3
        await finish_held(runtime, running)


# -- the executor ------------------------------------------------------------------------


async def test_executor_times_out_a_tool_with_execution_timeout(runtime: Runtime) -> None:
    for tool in ("testkit_hold", "testkit_hold_uncancellable"):
        with anyio.fail_after(5), pytest.raises(ExecutionTimeout) as caught:
            await runtime.executor.run(tool, {}, timeout_ms=10)
        assert caught.value.code is ErrorCode.EXECUTION_TIMEOUT
        assert caught.value.extra["timeout_ms"] == 10


async def test_the_timeout_of_a_non_cancellable_sync_tool_still_ends_the_run(runtime: Runtime) -> None:
    with anyio.fail_after(5), pytest.raises(ExecutionTimeout):
        await runtime.executor.run("testkit_sleep_uncancellable", {"seconds": 2}, timeout_ms=50)


async def test_a_failing_claim_does_not_take_the_engine_down(
    runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = runtime.engine.store
    real_claim = store.claim_next
    failures = 0

    async def claim_that_fails_once(**kwargs: Any) -> list[Job]:
        nonlocal failures
        if failures == 0:
            failures += 1
            raise OSError("disk I/O error")
        return await real_claim(**kwargs)

    monkeypatch.setattr(store, "claim_next", claim_that_fails_once)
    job = await run_job(runtime, "demo_echo", {"text": "after the failure"})
    assert failures == 1
    assert job.status is JobStatus.COMPLETED


async def test_a_worker_that_lost_its_run_cannot_end_the_next_one(runtime: Runtime) -> None:
    held = await start_held(runtime)
    store = runtime.engine.store
    stale = held.attempts  # 0 when submitted: the run that is going on is attempt 1
    assert await store.finish(held, status=JobStatus.FAILED, now=now_ms()) is None
    assert await store.requeue(held.job_id, attempt=stale, run_after=0) is None
    assert (await finish_held(runtime, held)).status is JobStatus.COMPLETED


async def test_executor_rejects_a_non_positive_timeout(runtime: Runtime) -> None:
    with pytest.raises(InvalidArguments) as caught:
        await runtime.executor.run("demo_echo", {"text": "x"}, timeout_ms=-5)
    assert caught.value.extra["argument"] == "timeout_ms"


async def test_executor_sends_progress_to_its_sink(runtime: Runtime) -> None:
    seen: list[Progress] = []

    async def sink(progress: Progress) -> None:
        seen.append(progress)

    outcome = await runtime.executor.run("demo_sleep", {"seconds": 0, "steps": 3}, progress=sink)
    assert outcome.result == {"slept_seconds": 0.0, "steps": 3}
    assert seen[-1] == Progress(3, 3, "step 3 of 3")


async def test_executor_survives_a_failing_progress_sink(runtime: Runtime) -> None:
    async def broken(progress: Progress) -> None:
        raise RuntimeError("client went away")

    outcome = await runtime.executor.run("demo_sleep", {"seconds": 0, "steps": 2}, progress=broken)
    assert outcome.result["steps"] == 2


async def test_executor_bounds_arguments_and_results(tmp_path: Path, database: str) -> None:
    settings = make_settings(tmp_path, db=database, max_argument_bytes=100, max_result_bytes=100)
    async with open_runtime(settings, run_workers=False) as runtime:
        with pytest.raises(PayloadTooLarge) as caught:
            await runtime.executor.run("demo_echo", {"text": "x" * 200})
        assert caught.value.code is ErrorCode.PAYLOAD_TOO_LARGE
        with pytest.raises(PayloadTooLarge):
            await runtime.executor.run("testkit_big_result", {"size": 200})
        assert (await runtime.executor.run("testkit_big_result", {"size": 50})).result == "x" * 50


async def test_executor_maps_a_tool_exception_to_execution_error(runtime: Runtime) -> None:
    with pytest.raises(ExecutionError) as caught:
        await runtime.executor.run("demo_fail", {"message": "boom"})
    payload = caught.value.to_payload()
    assert payload["code"] == "EXECUTION_ERROR"
    assert payload["details"] == {"exception": "DemoFailure"}


async def test_executor_rejects_unknown_tools_and_bad_arguments(runtime: Runtime) -> None:
    executor: Executor = runtime.executor
    with pytest.raises(ToolNotFound):
        await executor.run("demo_nope", {})
    for arguments, argument in [({}, "a"), ({"a": 1, "b": "x"}, "b"), ({"a": 1, "b": 2, "z": 0}, "z")]:
        with pytest.raises(InvalidArguments) as caught:
            await executor.run("demo_add", arguments)
        assert caught.value.extra["argument"] == argument
    with pytest.raises(InvalidArguments):
        await executor.run("demo_add", "a=1")
