"""Scale-out on PostgreSQL with real processes: HTTP servers that run no jobs, workers that run
them, one queue. A worker killed mid-run, limits and revocation that hold for the whole deployment."""

from __future__ import annotations

import json
import signal
import sys
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import httpx2
import pytest

from conveyor.jobs.postgres_store import migrate
from tests import databases
from tests.http_helpers import TERMINAL, error_of, ok
from tests.serve_process import Served, conveyor_http, conveyor_worker, env_with_testkit, server_env

pytestmark = [pytest.mark.anyio, pytest.mark.slow]

JOBS = 2000
SUBMITTERS = 16  # concurrent clients per server
STREAMED = 40  # jobs followed over SSE through the server that did not take their submit
WORKERS = 3
LONG = range(0, JOBS, 50)  # runs of the non-idempotent tool long enough to be caught mid-run by a kill


@pytest.fixture
def postgres(tmp_path: Path) -> Any:
    with databases.fresh_database("postgres", tmp_path) as url:
        yield url


@asynccontextmanager
async def two_servers(tmp_path: Path, db: str, env: dict[str, str]) -> AsyncIterator[tuple[Served, Served]]:
    """Two front doors on one database, as behind a load balancer; neither runs jobs."""
    async with (
        conveyor_http(tmp_path, signal.SIGTERM, "--worker", "off", env=env, db=db) as a,
        conveyor_http(tmp_path, signal.SIGTERM, "--worker", "off", env=env, db=db, key=a.key) as b,
    ):
        yield a, b


async def conveyor_cli(*args: str) -> Any:
    done = await anyio.run_process([sys.executable, "-m", "conveyor", *args], env=server_env())
    return json.loads(done.stdout)


async def test_two_servers_and_three_workers_lose_no_job_and_run_none_twice_when_a_worker_dies(
    tmp_path: Path, postgres: str
) -> None:
    await migrate(postgres)
    await databases.execute(postgres, "CREATE TABLE runs (key TEXT NOT NULL, pid INTEGER NOT NULL)")
    env = env_with_testkit(
        lease_seconds="3",  # the killed worker's jobs are recovered 3 s after its last heartbeat
        sweep_interval_seconds="0.5",
        enterprise_requests_per_minute="10000000",
        enterprise_max_concurrent_jobs="10000",
    )
    jobs = [
        {"tool": "testkit_idempotent_nap", "arguments": {"seconds": 0.02}}
        if n % 2
        else {
            "tool": "testkit_record_run_in_table",
            "arguments": {"db": postgres, "key": f"k{n}", "seconds": 2 if n in LONG else 0.02},
        }
        for n in range(JOBS)
    ]
    acknowledged: dict[int, str] = {}  # job number -> job id
    streamed: dict[str, str] = {}  # job id -> the status its SSE stream ended with

    async def submit_all(http: httpx2.AsyncClient, other: httpx2.AsyncClient, numbers: list[int]) -> None:
        for n in numbers:
            acknowledged[n] = ok(await http.post("/jobs/submit", json=jobs[n]), 202)["job_id"]
            if n < STREAMED:
                tg.start_soon(follow, other, acknowledged[n])

    async def follow(http: httpx2.AsyncClient, job_id: str) -> None:
        async with http.stream("GET", f"/jobs/{job_id}/stream") as events:
            async for line in events.aiter_lines():
                if line.startswith("data: ") and (status := json.loads(line[6:])["status"]) in TERMINAL:
                    streamed[job_id] = status
                    return

    async with AsyncExitStack() as stack:
        a, b = await stack.enter_async_context(two_servers(tmp_path, postgres, env))
        doomed = await stack.enter_async_context(
            conveyor_worker(tmp_path, signal.SIGKILL, env=env, db=postgres, exit_code=-signal.SIGKILL)
        )
        for _ in range(WORKERS - 1):
            await stack.enter_async_context(conveyor_worker(tmp_path, signal.SIGTERM, env=env, db=postgres))
        headers = {"Authorization": f"Bearer {a.key}"}
        to_a = await stack.enter_async_context(
            httpx2.AsyncClient(base_url=a.url, headers=headers, timeout=60)
        )
        to_b = await stack.enter_async_context(
            httpx2.AsyncClient(base_url=b.url, headers=headers, timeout=60)
        )
        assert doomed.process is not None
        with anyio.fail_after(240):
            async with anyio.create_task_group() as tg:
                for n in range(2 * SUBMITTERS):
                    first, other = (to_a, to_b) if n % 2 else (to_b, to_a)
                    tg.start_soon(submit_all, first, other, list(range(n, JOBS, 2 * SUBMITTERS)))
                # Killed in the middle of a long run of the non-idempotent tool: it must not run again.
                killed_ids = await kill_mid_run(postgres, doomed, [f"k{n}" for n in LONG])
            finished: dict[int, dict[str, Any]] = {}

            async def finish(numbers: list[int], http: httpx2.AsyncClient) -> None:
                for n in numbers:
                    job = ok(await http.get(f"/jobs/{acknowledged[n]}", params={"wait_seconds": 25}))
                    while job["status"] not in TERMINAL:
                        job = ok(await http.get(f"/jobs/{acknowledged[n]}", params={"wait_seconds": 25}))
                    finished[n] = job

            async with anyio.create_task_group() as tg:
                for n in range(2 * SUBMITTERS):
                    # Waited on through the server that did not take the submit.
                    tg.start_soon(finish, list(range(n, JOBS, 2 * SUBMITTERS)), to_a if n % 2 else to_b)
            total = ok(await to_a.get("/jobs", params={"limit": 1}))["pagination"]["total"]

    runs: dict[str, int] = {}
    for key, count in await databases.execute(postgres, "SELECT key, COUNT(*) FROM runs GROUP BY key"):
        runs[key] = count
    assert total == JOBS
    assert len(acknowledged) == JOBS
    idempotent = [finished[n] for n in range(1, JOBS, 2)]
    assert {job["status"] for job in idempotent} == {"completed"}
    recorded = {n: finished[n] for n in range(0, JOBS, 2)}
    assert max(runs.values()) == 1  # no run of the non-idempotent tool ever twice
    lost = {job["job_id"] for job in recorded.values() if job["status"] != "completed"}
    assert lost  # the long run the kill caught
    owners = (
        "SELECT j.job_id, j.lease_owner, w.pid FROM jobs j LEFT JOIN workers w ON j.lease_owner = w.worker_id"
    )
    assert lost <= killed_ids, [row for row in await databases.execute(postgres, owners) if row[0] in lost]
    for n, job in recorded.items():
        if job["job_id"] in lost:
            assert (job["status"], job["error"]["code"]) == ("failed", "WORKER_LOST")
        else:
            assert job["status"] == "completed"
            assert runs[f"k{n}"] == 1
    assert streamed == {acknowledged[n]: finished[n]["status"] for n in range(STREAMED)}


async def kill_mid_run(db: str, worker: Served, keys: list[str]) -> set[str]:
    """SIGKILL the worker once a run it started has recorded one of ``keys``; the ids of the
    jobs it held then."""
    assert worker.process is not None
    pid = {"pid": worker.process.pid}
    recorded = "SELECT COUNT(*) FROM runs WHERE pid = :pid AND key = ANY(:keys)"
    # Another process's state, bounded by the caller's fail_after: nothing to wait on but the database.
    while not (await databases.execute(db, recorded, {**pid, "keys": keys}))[0][0]:  # noqa: ASYNC110
        await anyio.sleep(0.01)
    worker.process.kill()
    await worker.process.wait()
    # A claim the worker sent just before it died still commits: read what it held only once
    # the database has ended the dead process's sessions.
    sessions = "SELECT COUNT(*) FROM pg_stat_activity WHERE application_name = :name"
    name = {"name": f"conveyor {worker.process.pid}"}
    while (await databases.execute(db, sessions, name))[0][0]:  # noqa: ASYNC110
        await anyio.sleep(0.01)
    held = """
        SELECT j.job_id FROM jobs j JOIN workers w ON j.lease_owner = w.worker_id
        WHERE w.pid = :pid AND j.status = 'running'
    """
    return {row[0] for row in await databases.execute(db, held, pid)}


async def test_a_free_key_gets_exactly_its_10_executions_a_minute_across_two_servers(
    tmp_path: Path, postgres: str
) -> None:
    env = env_with_testkit()
    async with two_servers(tmp_path, postgres, env) as (a, b):
        free = await conveyor_cli("keys", "create", "--plan", "free", "--db", postgres)
        headers = {"Authorization": f"Bearer {free['key']}"}
        async with (
            httpx2.AsyncClient(base_url=a.url, headers=headers, timeout=30) as to_a,
            httpx2.AsyncClient(base_url=b.url, headers=headers, timeout=30) as to_b,
        ):
            answers: list[httpx2.Response] = []

            async def submit(http: httpx2.AsyncClient) -> None:
                body = {"tool": "demo_echo", "arguments": {"text": "x"}}
                answers.append(await http.post("/jobs/submit", json=body))

            with anyio.fail_after(30):
                async with anyio.create_task_group() as tg:
                    for n in range(24):
                        tg.start_soon(submit, to_a if n % 2 else to_b)
    accepted = [answer for answer in answers if answer.status_code == 202]
    refused = [answer for answer in answers if answer.status_code != 202]
    assert len(accepted) == 10
    for answer in refused:
        error_of(answer, 429, "RATE_LIMIT_EXCEEDED")
        assert answer.headers["x-ratelimit-remaining"] == "0"
        assert int(answer.headers["retry-after"]) >= 1


async def test_a_key_revoked_is_refused_by_every_server_on_its_next_request(
    tmp_path: Path, postgres: str
) -> None:
    env = env_with_testkit()
    async with two_servers(tmp_path, postgres, env) as (a, b):
        user = await conveyor_cli("keys", "create", "--db", postgres)
        headers = {"Authorization": f"Bearer {user['key']}"}
        async with (
            httpx2.AsyncClient(base_url=a.url, headers=headers, timeout=30) as to_a,
            httpx2.AsyncClient(base_url=b.url, headers=headers, timeout=30) as to_b,
        ):
            ok(await to_a.get("/jobs"))
            ok(await to_b.get("/jobs"))
            await conveyor_cli("keys", "revoke", user["key_id"], "--db", postgres)
            error_of(await to_a.get("/jobs"), 401, "UNAUTHORIZED")
            error_of(await to_b.get("/jobs"), 401, "UNAUTHORIZED")
