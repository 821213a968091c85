"""The store protocol's contract, on SQLite and on PostgreSQL alike: several stores on one
database stand for several processes (each has its own connections and change watch)."""

from __future__ import annotations

import builtins
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path

import anyio
import pytest

from conveyor.auth import ApiKeys, Principal
from conveyor.jobs.models import Job, JobStatus, NewJob, now_ms
from conveyor.jobs.queries import load_migrations
from conveyor.jobs.sql_store import SQLJobStore
from conveyor.limits import PlanLimits, RateLimiter
from conveyor.runtime import open_store
from conveyor.settings import is_postgres_url
from tests import databases
from tests.conftest import make_settings

pytestmark = pytest.mark.anyio

TOOLS = ["demo_echo"]


@asynccontextmanager
async def stores(tmp_path: Path, database: str, count: int) -> AsyncIterator[builtins.list[SQLJobStore]]:
    """``count`` stores open on one database, as ``count`` processes would have."""
    settings = make_settings(tmp_path, db=database)
    async with AsyncExitStack() as stack:
        opened = []
        for _ in range(count):
            store = open_store(settings)
            await store.open()
            stack.push_async_callback(store.close)
            opened.append(store)
        yield opened


async def claim(store: SQLJobStore, *, limit: int = 1, worker: str = "w") -> builtins.list[Job]:
    now = now_ms()
    return await store.claim_next(
        worker=worker, queues=None, tools=TOOLS, now=now, lease_expires_at=now + 60_000, limit=limit
    )


def new_job(owner: str = "alice", **fields: object) -> NewJob:
    return NewJob(tool="demo_echo", arguments={"text": "x"}, owner=owner, **fields)  # type: ignore[arg-type]


async def test_concurrent_claimers_never_claim_a_job_twice(tmp_path: Path, database: str) -> None:
    async with stores(tmp_path, database, 3) as (one, two, three):
        for _ in range(120):
            await one.insert(new_job())
        claimed: builtins.list[str] = []

        async def claimer(store: SQLJobStore, worker: str) -> None:
            while jobs := await claim(store, limit=4, worker=worker):
                claimed.extend(job.job_id for job in jobs)

        with anyio.fail_after(30):
            async with anyio.create_task_group() as tg:
                for index, store in enumerate((one, two, three, one, two, three)):
                    tg.start_soon(claimer, store, f"w{index}")
        assert len(claimed) == 120
        assert len(set(claimed)) == 120
        assert await one.queue_depth() == 0


async def test_a_claim_takes_the_oldest_due_jobs_up_to_its_limit(tmp_path: Path, database: str) -> None:
    async with stores(tmp_path, database, 1) as (store,):
        inserted = [await store.insert(new_job()) for _ in range(5)]
        first = await claim(store, limit=3)
        second = await claim(store, limit=3)
        assert [job.job_id for job in first] == [job.job_id for job in inserted[:3] if job]
        assert [job.job_id for job in second] == [job.job_id for job in inserted[3:] if job]
        assert all(job.status is JobStatus.RUNNING and job.attempts == 1 for job in first + second)
        assert await claim(store, limit=3) == []


async def test_an_owner_limit_holds_against_claims_from_many_processes_at_once(
    tmp_path: Path, database: str
) -> None:
    async with stores(tmp_path, database, 4) as opened:
        for _ in range(20):
            await opened[0].insert(new_job("limited", max_concurrent=2))
        for _ in range(6):
            await opened[0].insert(new_job("free"))
        claimed: builtins.list[Job] = []

        async def claimer(store: SQLJobStore) -> None:
            claimed.extend(await claim(store, limit=5))

        async with anyio.create_task_group() as tg:
            for store in opened * 2:
                tg.start_soon(claimer, store)
        # A claim may come back short while others hold rows they do not take in the end
        # (SKIP LOCKED): one more look, alone, finds what is left.
        claimed.extend(await claim(opened[0], limit=20))
    owners = [job.owner for job in claimed]
    assert owners.count("limited") == 2
    assert owners.count("free") == 6


async def test_a_limited_owners_jobs_do_not_hold_back_other_owners(tmp_path: Path, database: str) -> None:
    async with stores(tmp_path, database, 1) as (store,):
        for _ in range(3):
            await store.insert(new_job("limited", max_concurrent=1))
        other = await store.insert(new_job("other"))
        claimed = await claim(store, limit=2)
        assert other is not None
        assert [job.owner for job in claimed] == ["limited", "other"]
        assert claimed[1].job_id == other.job_id
        assert await claim(store, limit=2) == []  # the limited owner's next waits for its first


async def test_an_insert_answers_the_job_as_stored_with_its_place_in_the_queue(
    tmp_path: Path, database: str
) -> None:
    # The SQLite store builds the answer from what it inserted and the few values the statement
    # returns; it must be the row a later read finds, every field of it.
    async with stores(tmp_path, database, 2) as (one, two):
        plain = await one.insert(new_job())
        full = await one.insert(
            new_job(
                "bob",
                queue="slow",
                idempotency_key="key-1",
                trace_id="t" * 32,
                timeout_ms=5_000,
                webhook_url="https://example.com/hook",
                estimated_duration_ms=1_200,
                max_concurrent=2,
                kind="task",
                ttl_ms=60_000,
                dedupe_key=None,
                sealed_credentials="sealed-text",
                tool_version="2.0",
                requested_version="2.0",
            )
        )
        second_in_default = await two.insert(
            NewJob(tool="demo_echo", arguments={"text": "héllo", "more": [1, 2.5, None, True]}, owner="carol")
        )
        assert plain is not None
        assert full is not None
        assert second_in_default is not None
        for inserted in (plain, full, second_in_default):
            assert inserted == await two.get(inserted.job_id)
        assert (plain.position_in_queue, full.position_in_queue) == (1, 1)  # queues count apart
        assert second_in_default.position_in_queue == 2
        assert second_in_default.version > full.version > plain.version


async def test_a_finish_answers_the_job_as_stored(tmp_path: Path, database: str) -> None:
    # The SQLite store builds the ended job from the running one and the few values the finish
    # returns; it must be the row a later read finds, with what others changed during the run.
    async with stores(tmp_path, database, 2) as (one, two):
        hooked = new_job(
            "bob", webhook_url="https://example.com/hook", sealed_credentials="s", tool_version="2.0"
        )
        for submitted in (new_job(), hooked):
            assert await one.insert(submitted) is not None
        quiet, loud = await claim(one, limit=2)
        await one.save_progress(quiet.job_id, {"percentage": 40, "message": "half"}, attempt=quiet.attempts)
        assert await two.request_cancel(quiet.job_id, now=now_ms()) is not None  # another process
        ended = [
            await one.finish(
                quiet,
                status=JobStatus.COMPLETED,
                now=now_ms(),
                result={"text": "x", "n": [1, 2.5]},
                step_results=[{"step": 1}],
                execution_time_ms=12,
                tool_version="1.1",
            ),
            await one.finish(loud, status=JobStatus.FAILED, now=now_ms(), error={"code": "BOOM"}),
        ]
        for job in ended:
            assert job is not None
            assert job == await two.get(job.job_id)
        assert ended[0] is not None
        assert ended[1] is not None
        assert (ended[0].progress, ended[0].cancel_requested_at is not None) == (
            {"percentage": 40, "message": "half"},
            True,
        )
        assert (ended[1].sealed_credentials, ended[1].lease_owner) == (None, None)
        now = now_ms()
        deliveries = await two.webhooks.claim_deliveries(now=now, claimed_until=now + 60_000, limit=5)
        assert [delivery.job_id for delivery, _secret in deliveries] == [loud.job_id]


async def test_an_idempotency_key_and_an_active_duplicate_insert_nothing(
    tmp_path: Path, database: str
) -> None:
    async with stores(tmp_path, database, 2) as (one, two):
        keyed = await one.insert(new_job(idempotency_key="k"))
        assert keyed is not None
        assert await two.insert(new_job(idempotency_key="k")) is None
        found = await two.get_by_idempotency_key("alice", "k")
        assert found is not None
        assert found.job_id == keyed.job_id
        assert await two.insert(new_job("bob", idempotency_key="k")) is not None  # another owner's key

        first = await one.insert(new_job("carol", dedupe_key="d"))
        assert first is not None
        assert await two.insert(new_job("carol", dedupe_key="d")) is None
        duplicate = await two.get_active_duplicate("carol", "d")
        assert duplicate is not None
        assert duplicate.job_id == first.job_id
        running = {job.job_id: job for job in await claim(two, limit=5)}
        assert await two.insert(new_job("carol", dedupe_key="d")) is None  # running is active too
        assert first.job_id in running
        await two.finish(running[first.job_id], status=JobStatus.COMPLETED, now=now_ms(), result=None)
        assert await two.insert(new_job("carol", dedupe_key="d")) is not None  # none active any more


async def test_every_write_of_a_run_is_fenced_by_its_attempt(tmp_path: Path, database: str) -> None:
    async with stores(tmp_path, database, 2) as (one, two):
        job = await one.insert(new_job())
        assert job is not None
        [run] = await claim(one)
        assert await two.requeue(run.job_id, attempt=run.attempts, run_after=0) is not None
        [rerun] = await claim(two)
        assert rerun.attempts == 2
        # The first run's worker comes back: none of its writes lands.
        assert await one.finish(run, status=JobStatus.COMPLETED, now=now_ms()) is None
        assert await one.hand_back(run.job_id, attempt=1, now=now_ms()) is None
        await one.save_progress(run.job_id, {"percentage": 50}, attempt=1)
        stored = await two.get(run.job_id)
        assert stored is not None
        assert (stored.status, stored.attempts, stored.progress) == (JobStatus.RUNNING, 2, None)


async def test_a_store_hears_the_changes_of_others_and_not_its_own(tmp_path: Path, database: str) -> None:
    async with stores(tmp_path, database, 2) as (one, two):
        heard: builtins.list[tuple[str, JobStatus]] = []
        ended: set[str] = set()
        both_ended = anyio.Event()

        def on_change(jobs: builtins.list[Job]) -> None:
            heard.extend((job.job_id, job.status) for job in jobs)
            ended.update(job.job_id for job in jobs if job.status.terminal)
            if len(ended) == 2:
                both_ended.set()

        async with anyio.create_task_group() as tg:
            await tg.start(lambda task_status: one.watch_changes(on_change, task_status=task_status))
            own = await one.insert(new_job())
            theirs = await two.insert(new_job("bob"))
            for run in await claim(two, limit=5):
                await two.finish(run, status=JobStatus.COMPLETED, now=now_ms(), result="ok")
            with anyio.fail_after(5):
                await both_ended.wait()
            tg.cancel_scope.cancel()
    assert own is not None
    assert theirs is not None
    assert ended == {own.job_id, theirs.job_id}
    assert (own.job_id, JobStatus.QUEUED) not in heard  # its own insert


async def test_a_key_revoked_through_one_store_is_refused_by_another_at_once(
    tmp_path: Path, database: str
) -> None:
    async with stores(tmp_path, database, 2) as (one, two):
        key, secret = await ApiKeys(one).create(role="user", plan="free")
        assert (await ApiKeys(two).authenticate(secret)).id == key.key_id
        assert await ApiKeys(one).revoke(key.key_id)
        with pytest.raises(Exception, match="revoked"):
            await ApiKeys(two).authenticate(secret)


async def test_rate_windows_count_every_store_against_one_limit(tmp_path: Path, database: str) -> None:
    async with stores(tmp_path, database, 3) as opened:
        counts: builtins.list[int | None] = []

        async def hit(store: SQLJobStore) -> None:
            counts.append(await store.hit_rate_window("key_a", window_start=600, limit=10))

        async with anyio.create_task_group() as tg:
            for store in opened * 6:
                tg.start_soon(hit, store)
        assert sorted(count for count in counts if count is not None) == list(range(1, 11))
        assert counts.count(None) == 8
        assert await opened[1].peek_rate_window("key_a", window_start=600) == 10
        # The next window starts from nothing; another key has its own.
        assert await opened[2].hit_rate_window("key_a", window_start=660, limit=10) == 1
        assert await opened[2].peek_rate_window("key_a", window_start=600) == 0
        assert await opened[0].hit_rate_window("key_b", window_start=660, limit=10) == 1


async def test_limiters_in_several_processes_count_high_limits_in_blocks_and_never_exceed_them(
    tmp_path: Path, database: str
) -> None:
    limit = 640  # a block of 10 per database write
    plans = {"enterprise": PlanLimits(limit, 1)}
    principal = Principal("key_big", "user", "enterprise")
    async with stores(tmp_path, database, 3) as opened:
        limiters = [RateLimiter(plans, store) for store in opened]  # as three processes would
        allowed = 0
        for n in range(limit + 100):
            state = await limiters[n % 3].hit(principal, now=630.0)
            assert state is not None
            allowed += state.allowed
        counted = await opened[0].peek_rate_window("key_big", window_start=600)
    assert counted <= limit
    assert allowed <= limit
    assert allowed >= limit - 3 * 10  # at most a block per process left unused when the window filled
    assert counted - allowed <= 3 * 10  # counted but unused: a block per process at most


async def test_stores_opening_a_new_database_at_once_apply_each_migration_once(
    tmp_path: Path, database: str
) -> None:
    settings = make_settings(tmp_path, db=database)
    opened = [open_store(settings) for _ in range(4)]
    with anyio.fail_after(20):
        async with anyio.create_task_group() as tg:
            for store in opened:
                tg.start_soon(store.open)
    for store in opened:
        await store.close()
    if is_postgres_url(database):
        applied = await databases.execute(database, "SELECT version FROM schema_migrations ORDER BY version")
        assert [row[0] for row in applied] == [version for version, _ in load_migrations("postgres")]
    else:
        [(version,)] = await databases.execute(database, "PRAGMA user_version")
        assert version == load_migrations("sqlite")[-1][0]


async def test_each_webhook_delivery_is_claimed_by_one_store_only(tmp_path: Path, database: str) -> None:
    async with stores(tmp_path, database, 3) as opened:
        for n in range(30):
            job = await opened[0].insert(new_job(webhook_url=f"https://example.com/{n}"))
            assert job is not None
        for run in await claim(opened[0], limit=30):
            await opened[0].finish(run, status=JobStatus.COMPLETED, now=now_ms(), result="ok")
        claimed: builtins.list[str] = []

        async def deliverer(store: SQLJobStore) -> None:
            now = now_ms()
            while batch := await store.webhooks.claim_deliveries(
                now=now, claimed_until=now + 60_000, limit=4
            ):
                claimed.extend(delivery.delivery_id for delivery, _secret in batch)

        async with anyio.create_task_group() as tg:
            for store in opened * 2:
                tg.start_soon(deliverer, store)
    assert len(claimed) == 30
    assert len(set(claimed)) == 30


async def test_changes_made_as_the_listening_connection_is_cut_still_arrive_and_later_ones_too(
    tmp_path: Path,
) -> None:
    with databases.fresh_database("postgres", tmp_path) as database:
        async with stores(tmp_path, database, 2) as (one, two):
            ended: builtins.list[str] = []
            heard = anyio.Event()

            def on_change(jobs: builtins.list[Job]) -> None:
                nonlocal heard
                ended.extend(job.job_id for job in jobs if job.status.terminal)
                heard.set()

            async def end_one_job() -> str:
                nonlocal heard
                heard = anyio.Event()
                job = await two.insert(new_job())
                assert job is not None
                [run] = await claim(two)
                await two.finish(run, status=JobStatus.COMPLETED, now=now_ms(), result="ok")
                return run.job_id

            async with anyio.create_task_group() as tg:
                await tg.start(lambda task_status: one.watch_changes(on_change, task_status=task_status))
                # The server ends the store's listening connection (as a restart or a failover would).
                cut = """SELECT pg_terminate_backend(pid) FROM pg_stat_activity
                         WHERE query = 'LISTEN "conveyor.' || current_schema() || '"'"""
                [(terminated,)] = await databases.execute(database, cut)
                assert terminated is True
                for _ in range(2):  # caught up from the poll once it is back, then heard listening
                    job_id = await end_one_job()
                    with anyio.fail_after(10):
                        while job_id not in ended:
                            await heard.wait()
                            heard = anyio.Event()
                tg.cancel_scope.cancel()
