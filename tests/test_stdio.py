"""``conveyor serve`` as a real subprocess, driven by the MCP Python SDK client over stdio."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp import Client
from mcp.client.stdio import StdioServerParameters

pytestmark = [pytest.mark.anyio, pytest.mark.slow]

REPO = Path(__file__).resolve().parent.parent
ERAS = ["auto", "legacy"]
TERMINAL = {"completed", "failed", "canceled", "timeout"}


def serve_command(db: Path, *extra: str) -> list[str]:
    toolkits = ["--toolkit", "conveyor_toolkits.demo:toolkit", "--toolkit", "tests.toolkits:toolkit"]
    return [sys.executable, "-m", "conveyor", "serve", "--db", str(db), *toolkits, *extra]


def server_env() -> dict[str, str]:
    """What the server needs: ``tests.toolkits`` importable, and a fast lease/sweep for recovery."""
    return {
        "PYTHONPATH": str(REPO),
        "CONVEYOR_ENTRY_POINTS": "false",
        "CONVEYOR_LEASE_SECONDS": "1",
        "CONVEYOR_SWEEP_INTERVAL_SECONDS": "0.2",
        "CONVEYOR_PROGRESS_INTERVAL_SECONDS": "0",
        "CONVEYOR_SQLITE_SYNCHRONOUS": "NORMAL",
    }


def server(db: Path, *extra: str) -> StdioServerParameters:
    command, *args = serve_command(db, *extra)
    return StdioServerParameters(command=command, args=args, env=server_env(), cwd=str(REPO))


async def call(client: Client, tool: str, arguments: dict[str, Any]) -> dict[str, Any]:
    result = await client.call_tool(tool, arguments)
    assert not result.is_error, result
    data: dict[str, Any] = result.structured_content or {}
    return data


async def submit(client: Client, tool: str, arguments: dict[str, Any]) -> str:
    job = await call(client, "jobs_submit", {"tool": tool, "arguments": arguments})
    return str(job["job_id"])


async def wait_until_running(client: Client, job_id: str) -> None:
    # The job runs in another process: there is no Event to wait on, so poll, bounded by fail_after.
    now = {"job_id": job_id, "wait_seconds": 0}
    with anyio.fail_after(10):
        while (await call(client, "jobs_status", now))["status"] != "running":  # noqa: ASYNC110
            await anyio.sleep(0.02)


async def wait_until_finished(client: Client, job_id: str) -> dict[str, Any]:
    with anyio.fail_after(15):
        job = await call(client, "jobs_status", {"job_id": job_id, "wait_seconds": 10})
        while job["status"] not in TERMINAL:
            job = await call(client, "jobs_status", {"job_id": job_id, "wait_seconds": 10})
    return job


async def server_pid(client: Client) -> int:
    result = await client.call_tool("testkit_pid", {})
    assert not result.is_error
    text = result.content[0]
    assert text.type == "text"
    return int(text.text)


async def count_jobs(client: Client, **filters: Any) -> int:
    page = await call(client, "jobs_list", {"limit": 100, **filters})
    return int(page["pagination"]["total"])


@pytest.mark.parametrize("mode", ERAS)
async def test_a_job_submitted_over_stdio_completes_and_status_waits_for_it(
    tmp_path: Path, mode: str
) -> None:
    with anyio.fail_after(20):
        async with Client(server(tmp_path / "conveyor.db"), mode=mode) as client:
            names = {tool.name for tool in (await client.list_tools()).tools}
            assert {"demo_sleep", "demo_echo", "demo_add"} <= names
            assert {"jobs_submit", "jobs_status", "jobs_cancel", "jobs_list"} <= names

            job_id = await submit(client, "demo_sleep", {"seconds": 0.3, "steps": 3})
            job = await call(client, "jobs_status", {"job_id": job_id, "wait_seconds": 10})

    assert job["status"] == "completed"
    assert job["result"] == {"slept_seconds": 0.3, "steps": 3}
    assert job["attempts"] == 1


async def test_a_killed_server_loses_no_job_and_recovers_running_ones_by_their_retry_policy(
    tmp_path: Path,
) -> None:
    db = tmp_path / "conveyor.db"
    with anyio.fail_after(20):
        # Jobs run in the server process itself (inline), two at once: both busy with the jobs to
        # interrupt, so the later jobs stay queued.
        async with Client(server(db, "--worker", "inline", "--concurrency", "2")) as client:
            pid = await server_pid(client)
            retried = await submit(
                client, "demo_sleep", {"seconds": 3, "steps": 30}
            )  # idempotent, retry policy
            lost = await submit(client, "testkit_hold", {})  # not idempotent; never finishes by itself
            await wait_until_running(client, retried)
            await wait_until_running(client, lost)
            queued = [
                await submit(client, "demo_sleep", {"seconds": 0.05, "steps": 1}),
                await submit(client, "demo_add", {"a": 1, "b": 2}),
                await submit(client, "demo_echo", {"text": "still here"}),
            ]
            assert await count_jobs(client, status="queued") == len(queued)
            assert await count_jobs(client, status="running") == 2
            total = await count_jobs(client)
            os.kill(pid, signal.SIGKILL)

        async with Client(server(db, "--worker", "inline")) as client:
            finished = {
                job_id: await wait_until_finished(client, job_id) for job_id in [*queued, retried, lost]
            }
            assert await count_jobs(client) == total

    assert [finished[job_id]["status"] for job_id in queued] == ["completed"] * len(queued)
    assert finished[queued[1]]["result"] == {"sum": 3.0}
    assert finished[retried]["status"] == "completed"
    assert finished[retried]["attempts"] == 2
    assert finished[retried]["result"] == {"slept_seconds": 3.0, "steps": 30}
    assert finished[lost]["status"] == "failed"
    assert finished[lost]["error"]["code"] == "WORKER_LOST"
    assert finished[lost]["attempts"] == 1


async def test_the_server_exits_cleanly_when_its_stdin_closes(tmp_path: Path) -> None:
    # A stdio client may start the server only to probe it, then close stdin: that must end it.
    process = await anyio.open_process(
        serve_command(tmp_path / "conveyor.db"),
        env={**os.environ, **server_env()},
        cwd=str(REPO),
        stderr=subprocess.DEVNULL,
    )
    async with process:
        assert process.stdin is not None
        await process.stdin.aclose()
        with anyio.fail_after(10):
            assert await process.wait() == 0
