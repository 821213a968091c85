"""Many real Conveyor processes on one SQLite file: HTTP servers, workers, stdio servers started per
call and the local worker they share, and how each stops on a signal."""

from __future__ import annotations

import fcntl
import json
import os
import pty
import signal
import subprocess
import sys
import termios
import time
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread
import httpx2
import pytest
from mcp import Client
from mcp.client.stdio import StdioServerParameters

from conveyor import local_worker
from conveyor.jobs.models import JobStatus
from conveyor.runtime import open_runtime
from tests.conftest import make_settings
from tests.http_helpers import TERMINAL, error_of, ok
from tests.serve_process import REPO, conveyor_http, conveyor_worker, env_with_testkit, server_env

pytestmark = [pytest.mark.anyio, pytest.mark.slow]

OWNER = "alice"


# -- helpers ----------------------------------------------------------------------------------


def stdio_server(db: Path, *args: str, **settings: str) -> StdioServerParameters:
    command = [sys.executable, "-m", "conveyor", "serve", "--db", str(db), *args]
    return StdioServerParameters(
        command=command[0],
        args=command[1:],
        env={**server_env(), **env_with_testkit(**settings)},
        cwd=str(REPO),
    )


async def call(client: Client, tool: str, arguments: dict[str, Any]) -> dict[str, Any]:
    result = await client.call_tool(tool, arguments)
    assert not result.is_error, result
    return result.structured_content or {}


async def until_finished(client: Client, job_id: str) -> dict[str, Any]:
    job = await call(client, "jobs_status", {"job_id": job_id, "wait_seconds": 25})
    while job["status"] not in TERMINAL:
        job = await call(client, "jobs_status", {"job_id": job_id, "wait_seconds": 25})
    return job


async def until_unlocked(lock: Path) -> None:
    """Until the process holding this lock file's lock lets go of it (it exits)."""

    def wait() -> None:
        with open(lock) as file:
            fcntl.flock(file.fileno(), fcntl.LOCK_SH)  # blocks while the worker holds it
            fcntl.flock(file.fileno(), fcntl.LOCK_UN)

    await anyio.to_thread.run_sync(wait, abandon_on_cancel=True)


async def conveyor_cli(*args: str) -> subprocess.CompletedProcess[bytes]:
    return await anyio.run_process([sys.executable, "-m", "conveyor", *args], check=False, env=server_env())


async def submit(http: httpx2.AsyncClient, tool: str, arguments: dict[str, Any]) -> str:
    job_id: str = ok(await http.post("/jobs/submit", json={"tool": tool, "arguments": arguments}), 202)[
        "job_id"
    ]
    return job_id


async def count(http: httpx2.AsyncClient, **filters: str) -> int:
    total: int = ok(await http.get("/jobs", params={"limit": 1, **filters}))["pagination"]["total"]
    return total


async def until_running(http: httpx2.AsyncClient, job_id: str) -> None:
    """Follow the job's event stream until it is running (wherever it runs)."""
    async with http.stream("GET", f"/jobs/{job_id}/stream") as events:
        async for line in events.aiter_lines():
            if line.startswith("data: ") and json.loads(line[6:])["status"] == "running":
                return
    raise AssertionError(f"{job_id} ended without running")


# -- a stdio server per call, and the local worker ------------------------------------------


async def test_a_job_of_a_stdio_server_started_per_call_completes_after_that_server_exits(
    tmp_path: Path,
) -> None:
    db = tmp_path / "conveyor.db"
    server = stdio_server(db, worker_idle_exit_seconds="1")
    with anyio.fail_after(60):
        async with Client(server) as first_call:  # as langchain's get_tools() does: a server per call
            submitted = await call(
                first_call, "jobs_submit", {"tool": "demo_sleep", "arguments": {"seconds": 10, "steps": 5}}
            )
            status_of = {"job_id": submitted["job_id"], "wait_seconds": 0.5}
            while (await call(first_call, "jobs_status", status_of))["status"] == "queued":
                pass  # until the local worker has it: the server then exits in the middle of its run
        second_started = time.time()
        async with Client(server) as second_call:
            done = await until_finished(second_call, submitted["job_id"])

        await until_unlocked(local_worker.lock_path(str(db)))  # the idle worker exits by itself
        status = await conveyor_cli("worker", "status", "--db", str(db))

    assert done["status"] == "completed"
    assert done["result"] == {"slept_seconds": 10.0, "steps": 5}
    assert done["attempts"] == 1  # run once, from start to end: never handed back and restarted
    assert done["started_at"] < second_started
    assert status.returncode == 3, status.stderr.decode()
    assert json.loads(status.stdout)["running"] is False
    log = local_worker.log_path(str(db)).read_text()
    assert "action=job.finished" in log
    assert "action=worker.idle_exit" in log


async def test_a_second_local_worker_for_a_database_finds_the_first_and_stop_stops_it(tmp_path: Path) -> None:
    db = tmp_path / "conveyor.db"
    env = {**server_env(), **env_with_testkit()}
    async with conveyor_worker(tmp_path, signal.SIGTERM, "--local", env=env) as first:
        assert first.process is not None
        with anyio.fail_after(20):
            second = await anyio.run_process(
                [sys.executable, "-m", "conveyor", "worker", "--local", "--db", str(db)], env=env, check=False
            )
            status = await conveyor_cli("worker", "status", "--db", str(db))
            stop = await conveyor_cli("worker", "stop", "--db", str(db))
            stopped_with = await first.process.wait()
            after = await conveyor_cli("worker", "status", "--db", str(db))
    assert second.returncode == 0
    assert b"action=worker.exists" in second.stderr
    assert status.returncode == 0
    shown = json.loads(status.stdout)
    assert shown["pid"] == first.process.pid
    assert [worker["pid"] for worker in shown["workers"]] == [first.process.pid]
    assert json.loads(stop.stdout)["stopped"] is True
    assert stopped_with == 0
    assert after.returncode == 3


# -- many servers and a worker on one file -------------------------------------------------


JOBS = 2000
SUBMITTERS = 16  # concurrent clients per server


async def test_two_http_servers_and_a_worker_run_every_acknowledged_job_exactly_once(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    runs.mkdir()
    env = env_with_testkit(enterprise_requests_per_minute="10000000", enterprise_max_concurrent_jobs="10000")
    acknowledged: dict[str, str] = {}  # key -> job id
    refused: list[str] = []

    async def submit_all(http: httpx2.AsyncClient, keys: list[str]) -> None:
        for key in keys:
            body = {"tool": "testkit_record_run", "arguments": {"directory": str(runs), "key": key}}
            response = await http.post("/jobs/submit", json=body)
            if response.status_code == 503:
                error_of(response, 503, "STORE_UNAVAILABLE")
                assert int(response.headers["retry-after"]) >= 1
                refused.append(key)
            else:
                acknowledged[key] = ok(response, 202)["job_id"]

    async with (
        conveyor_http(tmp_path, signal.SIGTERM, env=env) as a,
        conveyor_http(tmp_path, signal.SIGTERM, env=env, key=a.key) as b,
        conveyor_worker(tmp_path, signal.SIGTERM, env=env),
    ):
        headers = {"Authorization": f"Bearer {a.key}"}
        async with (
            httpx2.AsyncClient(base_url=a.url, headers=headers, timeout=60) as to_a,
            httpx2.AsyncClient(base_url=b.url, headers=headers, timeout=60) as to_b,
        ):
            keys = [f"k{i}" for i in range(JOBS)]
            with anyio.fail_after(240):
                async with anyio.create_task_group() as tg:
                    for n in range(2 * SUBMITTERS):
                        tg.start_soon(submit_all, to_a if n % 2 else to_b, keys[n :: 2 * SUBMITTERS])
                finished: dict[str, dict[str, Any]] = {}

                async def finish(keys: list[str], http: httpx2.AsyncClient) -> None:
                    for key in keys:
                        job = ok(await http.get(f"/jobs/{acknowledged[key]}", params={"wait_seconds": 25}))
                        while job["status"] not in TERMINAL:
                            job = ok(
                                await http.get(f"/jobs/{acknowledged[key]}", params={"wait_seconds": 25})
                            )
                        finished[key] = job

                done_keys = list(acknowledged)
                async with anyio.create_task_group() as tg:
                    for n in range(2 * SUBMITTERS):
                        tg.start_soon(finish, done_keys[n :: 2 * SUBMITTERS], to_b if n % 2 else to_a)
                total = await count(to_a)

    assert len(acknowledged) + len(refused) == JOBS
    assert len(acknowledged) > JOBS // 2
    assert {job["status"] for job in finished.values()} == {"completed"}
    assert total == len(acknowledged)  # a refused submit committed nothing
    recorded: dict[str, int] = {}
    for run in runs.iterdir():
        key = run.name.split(".", 1)[0]
        recorded[key] = recorded.get(key, 0) + 1
    assert recorded == dict.fromkeys(acknowledged, 1)  # each acknowledged job ran exactly once


async def test_a_cancel_sent_through_one_server_stops_the_job_running_in_a_worker_within_a_second(
    tmp_path: Path,
) -> None:
    env = env_with_testkit()
    async with (
        conveyor_http(tmp_path, signal.SIGTERM, "--worker", "off", env=env) as front,
        conveyor_worker(tmp_path, signal.SIGTERM, env=env),
        httpx2.AsyncClient(
            base_url=front.url, headers={"Authorization": f"Bearer {front.key}"}, timeout=30
        ) as http,
    ):
        with anyio.fail_after(30):
            job_id = await submit(http, "testkit_nap", {"seconds": 60})
            await until_running(http, job_id)
            asked = time.monotonic()
            canceled = ok(await http.delete(f"/jobs/{job_id}"))
            answered = time.monotonic() - asked
    assert canceled["status"] == "canceled"
    assert canceled["error"]["code"] == "CANCELED"
    assert answered < 1.0


# -- stopping: SIGTERM, Ctrl-C ---------------------------------------------------------------


async def test_sigterm_lets_50_running_short_jobs_complete_before_the_server_exits(tmp_path: Path) -> None:
    env = env_with_testkit(enterprise_requests_per_minute="100000", enterprise_max_concurrent_jobs="100")
    async with conveyor_http(tmp_path, signal.SIGTERM, "--concurrency", "50", env=env) as served:
        assert served.process is not None
        headers = {"Authorization": f"Bearer {served.key}"}
        async with httpx2.AsyncClient(base_url=served.url, headers=headers, timeout=30) as http:
            with anyio.fail_after(30):
                ids = [await submit(http, "testkit_nap", {"seconds": 2}) for _ in range(50)]
                # They run in the server process: no event reaches the test, so poll, bounded.
                while await count(http, status="running") < 50:  # noqa: ASYNC110
                    await anyio.sleep(0.02)
        served.process.send_signal(signal.SIGTERM)
        with anyio.fail_after(30):
            assert await served.process.wait() == 0

    async with open_runtime(make_settings(tmp_path), run_workers=False) as runtime:
        jobs = [await runtime.engine.get(job_id, owner=None) for job_id in ids]
    assert [job.status for job in jobs] == [JobStatus.COMPLETED] * 50
    assert {job.attempts for job in jobs} == {1}


async def test_sigterm_hands_a_long_idempotent_job_back_uncounted_and_it_completes_after_a_restart(
    tmp_path: Path,
) -> None:
    env = env_with_testkit(shutdown_grace_seconds="0.2")
    async with open_runtime(make_settings(tmp_path), run_workers=False) as front:
        async with conveyor_worker(tmp_path, signal.SIGTERM, env=env) as worker:
            assert worker.process is not None
            job = await front.engine.submit("demo_sleep", {"seconds": 2, "steps": 4}, owner=OWNER)
            with front.events.subscribe(job.job_id) as updates, anyio.fail_after(20):
                while (await updates.next()).status is not JobStatus.RUNNING:
                    pass
                worker.process.send_signal(signal.SIGTERM)
                assert await worker.process.wait() == 0
        handed_back = await front.engine.get(job.job_id, owner=None)
        async with conveyor_worker(tmp_path, signal.SIGTERM, env=env):
            with anyio.fail_after(20):
                done = await front.engine.wait(job.job_id, owner=None, timeout_s=20)
    assert handed_back.status is JobStatus.QUEUED
    assert handed_back.attempts == 0
    assert done.status is JobStatus.COMPLETED
    assert done.attempts == 1


async def test_a_second_sigint_skips_the_rest_of_the_grace_period(tmp_path: Path) -> None:
    env = env_with_testkit(shutdown_grace_seconds="3600")
    async with open_runtime(make_settings(tmp_path), run_workers=False) as front:
        async with conveyor_worker(tmp_path, signal.SIGINT, env=env) as worker:
            assert worker.process is not None
            job = await front.engine.submit("testkit_nap", {"seconds": 3600}, owner=OWNER)
            with front.events.subscribe(job.job_id) as updates, anyio.fail_after(20):
                while (await updates.next()).status is not JobStatus.RUNNING:
                    pass
                worker.process.send_signal(signal.SIGINT)  # drain: the nap would need an hour
                # The worker is another process: its log is what tells that the drain began.
                while not any("action=worker.draining" in line for line in worker.stderr):  # noqa: ASYNC110
                    await anyio.sleep(0.02)
                worker.process.send_signal(signal.SIGINT)
                assert await worker.process.wait() == 0
        interrupted = await front.engine.get(job.job_id, owner=None)
    assert interrupted.status is JobStatus.FAILED
    assert interrupted.error is not None
    assert interrupted.error["code"] == "INTERRUPTED"


async def test_ctrl_c_in_a_terminal_stops_a_stdio_server_with_exit_0(tmp_path: Path) -> None:
    primary, secondary = pty.openpty()

    def controlling_terminal() -> None:  # the pty is the child's terminal, as a shell's would be
        os.setsid()
        fcntl.ioctl(secondary, termios.TIOCSCTTY, 0)

    command = [
        sys.executable,
        "-m",
        "conveyor",
        "serve",
        "--db",
        str(tmp_path / "conveyor.db"),
        "--worker",
        "inline",
    ]
    # Popen, not anyio.open_process: only it can make the pty the child's controlling terminal.
    process = subprocess.Popen(  # noqa: ASYNC220
        command,
        stdin=secondary,
        stdout=secondary,
        stderr=secondary,
        env={**server_env(), **env_with_testkit()},
        preexec_fn=controlling_terminal,
    )
    os.close(secondary)
    try:
        with anyio.fail_after(20):
            output = b""
            while b"action=stdio.serving" not in output:
                output += await anyio.to_thread.run_sync(os.read, primary, 4096, abandon_on_cancel=True)
            os.write(primary, b"\x03")  # Ctrl-C: the terminal sends SIGINT to the server
            code = await anyio.to_thread.run_sync(process.wait)
    finally:
        if process.poll() is None:
            process.kill()
        os.close(primary)
    assert code == 0
