"""Conveyor in front of an MCP server (tests/upstream_server.py, a real subprocess), reached over
stdio and over streamable HTTP: its tools served as ``up_<tool>``, called directly and as jobs."""

from __future__ import annotations

import hashlib
import json
import signal
import socket
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp import Client
from mcp.shared.subscriptions import ToolsListChanged

from conveyor.errors import ConveyorError, ErrorCode
from conveyor.jobs.models import JobStatus
from conveyor.mcp_server import build_server
from conveyor.runtime import Runtime, open_runtime
from conveyor.settings import UpstreamConfig
from conveyor.toolkit import served_name
from tests.conftest import ERAS, make_settings
from tests.serve_process import REPO, conveyor_worker, env_with_testkit

pytestmark = pytest.mark.anyio

TRANSPORTS = ["stdio", "http"]


def stdio_upstream(marks: Path) -> UpstreamConfig:
    return UpstreamConfig(
        name="up",
        command=(sys.executable, "-m", "tests.upstream_server"),
        cwd=str(REPO),
        env={"UPSTREAM_MARKS": str(marks)},
    )


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def http_upstream_process(marks: Path, port: int) -> Iterator[subprocess.Popen[bytes]]:
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.upstream_server", "--http", str(port)],
        cwd=REPO,
        env={"UPSTREAM_MARKS": str(marks), "PATH": "/usr/bin:/bin"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        yield process
    finally:
        process.kill()
        process.wait()


async def until_listening(port: int) -> None:
    with anyio.fail_after(20):
        while True:
            try:
                stream = await anyio.connect_tcp("127.0.0.1", port)
            except OSError:
                await anyio.sleep(0.05)  # another process starting: nothing to wait on but its port
                continue
            await stream.aclose()
            return


@asynccontextmanager
async def upstream_runtime(tmp_path: Path, transport: str, **overrides: Any) -> AsyncIterator[Runtime]:
    """A runtime in front of the test upstream, over the given transport."""
    marks = tmp_path / "marks"
    marks.mkdir(exist_ok=True)
    if transport == "stdio":
        async with open_runtime(
            make_settings(tmp_path, upstreams=(stdio_upstream(marks),), **overrides)
        ) as rt:
            yield rt
        return
    port = free_port()
    with http_upstream_process(marks, port):
        await until_listening(port)
        config = UpstreamConfig(name="up", url=f"http://127.0.0.1:{port}/mcp")
        async with open_runtime(make_settings(tmp_path, upstreams=(config,), **overrides)) as rt:
            yield rt


@pytest.fixture(params=TRANSPORTS)
async def runtime(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Runtime]:
    async with upstream_runtime(tmp_path, request.param) as runtime:
        yield runtime


@pytest.fixture(params=ERAS)
async def client(request: pytest.FixtureRequest, runtime: Runtime) -> AsyncIterator[Client]:
    async with Client(build_server(runtime), mode=request.param) as client:
        yield client


def marks(runtime: Runtime) -> Path:
    return Path(runtime.settings.db).parent / "marks"


async def test_the_upstream_tools_are_listed_with_its_name_before_theirs(client: Client) -> None:
    listed = {tool.name: tool for tool in (await client.list_tools()).tools}
    assert {"up_echo", "up_add", "up_slow", "up_fail", "up_die", "up_grow"} <= set(listed)
    add = listed["up_add"]
    assert add.description == "Add two whole numbers; the sum comes back as structured content."
    assert add.input_schema["required"] == ["a", "b"]
    assert add.output_schema is not None
    assert add.output_schema["properties"]["total"]["type"] == "integer"


async def test_a_direct_call_returns_the_upstream_result(client: Client) -> None:
    added = await client.call_tool("up_add", {"a": 2, "b": 3})
    echoed = await client.call_tool("up_echo", {"text": "hello"})
    assert not added.is_error
    assert added.structured_content == {"total": 5}
    assert echoed.structured_content == {"result": "hello"}


async def test_an_upstream_tool_error_is_an_execution_error_with_its_text(client: Client) -> None:
    failed = await client.call_tool("up_fail", {"message": "no such thing"})
    assert failed.is_error
    assert failed.structured_content is not None
    assert failed.structured_content["error"]["code"] == ErrorCode.EXECUTION_ERROR
    assert "no such thing" in failed.structured_content["error"]["message"]


async def test_bad_arguments_are_refused_before_reaching_the_upstream(client: Client) -> None:
    refused = await client.call_tool("up_add", {"a": "two", "b": 3})
    assert refused.is_error
    assert refused.structured_content is not None
    assert refused.structured_content["error"]["code"] == ErrorCode.INVALID_ARGUMENTS
    assert refused.structured_content["error"]["argument"] == "a"


async def test_progress_of_a_slow_upstream_tool_reaches_the_client(client: Client) -> None:
    seen: list[tuple[float, float | None, str | None]] = []
    all_steps = anyio.Event()

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        seen.append((progress, total, message))
        if progress == total:
            all_steps.set()

    with anyio.fail_after(20):
        result = await client.call_tool(
            "up_slow", {"seconds": 0.3, "steps": 3}, progress_callback=on_progress
        )
        # The SDK client runs progress callbacks as tasks: the last may follow the result.
        await all_steps.wait()
    assert not result.is_error
    assert [(p, t) for p, t, _ in seen] == [(1, 3), (2, 3), (3, 3)]
    assert seen[-1][2] == "step 3 of 3"


async def test_canceling_the_job_cancels_the_call_upstream(runtime: Runtime) -> None:
    job = await runtime.engine.submit("up_slow", {"seconds": 60, "steps": 60, "key": "job"}, owner="alice")
    with runtime.events.subscribe(job.job_id) as updates, anyio.fail_after(20):
        while (await updates.next()).progress is None:
            pass  # running upstream: it reported its first step
        canceled = await runtime.engine.cancel(job.job_id, owner="alice")
        # The upstream is another process: the file its cancelled tool leaves is what there is to see.
        while not (marks(runtime) / "cancelled-job").exists():  # noqa: ASYNC110
            await anyio.sleep(0.02)
    assert canceled.status is JobStatus.CANCELED


async def test_a_job_completes_though_the_client_gives_up_on_requests_after_5_s(
    runtime: Runtime, tmp_path: Path
) -> None:
    async with Client(build_server(runtime), read_timeout_seconds=5) as impatient:
        submitted = await impatient.call_tool(
            "jobs_submit", {"tool": "up_slow", "arguments": {"seconds": 6, "steps": 3}}
        )
        job_id = submitted.structured_content["job_id"]  # type: ignore[index]
        with anyio.fail_after(30):
            while True:
                status = await impatient.call_tool("jobs_status", {"job_id": job_id, "wait_seconds": 4})
                job = status.structured_content
                assert job is not None
                if job["status"] not in ("queued", "running"):
                    break
    assert job["status"] == "completed", job.get("error")
    assert job["result"] == {"result": "slept 6.0s"}


async def test_a_changed_tool_list_reaches_2026_listeners(runtime: Runtime) -> None:
    async with (
        Client(build_server(runtime), mode="auto") as client,
        client.listen(tools_list_changed=True) as events,
    ):
        assert "up_extra" not in {tool.name for tool in (await client.list_tools()).tools}
        await client.call_tool("up_grow", {})
        with anyio.fail_after(20):
            async for event in events:
                assert isinstance(event, ToolsListChanged)
                if "up_extra" in {tool.name for tool in (await client.list_tools()).tools}:
                    break
        shouted = await client.call_tool("up_extra", {"word": "loud"})
    assert shouted.structured_content == {"result": "LOUD"}


async def test_a_changed_tool_list_reaches_2025_sessions(runtime: Runtime) -> None:
    changed = anyio.Event()

    async def on_message(message: Any) -> None:
        if type(message).__name__ == "ToolListChangedNotification":
            changed.set()

    async with Client(build_server(runtime), mode="legacy", message_handler=on_message) as client:
        await client.list_tools()
        await client.call_tool("up_grow", {})
        with anyio.fail_after(20):
            await changed.wait()
        assert "up_extra" in {tool.name for tool in (await client.list_tools()).tools}


async def test_a_stdio_upstream_that_dies_mid_call_is_a_coded_error_and_the_next_call_restarts_it(
    tmp_path: Path,
) -> None:
    # Over HTTP nobody restarts a server that died: see the test of an HTTP upstream that stops.
    async with upstream_runtime(tmp_path, "stdio") as runtime, Client(build_server(runtime)) as client:
        died = await client.call_tool("up_die", {})
        with anyio.fail_after(20):
            echoed = await client.call_tool("up_echo", {"text": "back"})
        starts = list(marks(runtime).glob("started-*"))
    assert died.is_error
    assert died.structured_content is not None
    assert died.structured_content["error"]["code"] == ErrorCode.UPSTREAM_UNAVAILABLE
    assert died.structured_content["error"]["retryable"] is True
    assert echoed.structured_content == {"result": "back"}
    assert len(starts) == 2  # started again for the next call


async def test_an_http_upstream_that_stops_answers_upstream_unavailable_until_it_is_back(
    tmp_path: Path,
) -> None:
    marks_dir = tmp_path / "marks"
    marks_dir.mkdir()
    port = free_port()
    config = UpstreamConfig(name="up", url=f"http://127.0.0.1:{port}/mcp")
    with http_upstream_process(marks_dir, port) as first:
        await until_listening(port)
        settings = make_settings(tmp_path, upstreams=(config,), upstream_connect_timeout_seconds=1)
        async with open_runtime(settings) as runtime, Client(build_server(runtime)) as client:
            assert (await client.call_tool("up_echo", {"text": "1"})).structured_content == {"result": "1"}
            first.kill()
            first.wait()
            gone = await client.call_tool("up_echo", {"text": "2"})
            with http_upstream_process(marks_dir, port):
                await until_listening(port)
                with anyio.fail_after(30):
                    # Conveyor reconnects with backoff, in the background, to another process.
                    while (back := await client.call_tool("up_echo", {"text": "3"})).is_error:  # noqa: ASYNC110
                        await anyio.sleep(0.2)
    assert gone.is_error
    assert gone.structured_content is not None
    assert gone.structured_content["error"]["code"] == ErrorCode.UPSTREAM_UNAVAILABLE
    assert back.structured_content == {"result": "3"}


async def test_an_upstream_that_cannot_start_leaves_the_rest_serving(tmp_path: Path) -> None:
    broken = UpstreamConfig(name="broken", command=(sys.executable, "-c", "raise SystemExit(3)"))
    settings = make_settings(tmp_path, upstreams=(broken,), upstream_connect_timeout_seconds=2)
    async with open_runtime(settings) as runtime, Client(build_server(runtime)) as client:
        names = {tool.name for tool in (await client.list_tools()).tools}
        echoed = await client.call_tool("demo_echo", {"text": "still here"})
    assert not any(name.startswith("broken_") for name in names)
    assert "demo_echo" in names
    assert not echoed.is_error


async def test_a_stdio_upstream_ends_with_conveyor(tmp_path: Path) -> None:
    async with upstream_runtime(tmp_path, "stdio") as runtime:
        [started] = marks(runtime).glob("started-*")
        pid = int(started.name.split("-", 1)[1])
    with anyio.fail_after(10):
        while _alive(pid):  # noqa: ASYNC110
            await anyio.sleep(0.05)  # another process's end: nothing to wait on but /proc


def _alive(pid: int) -> bool:
    try:
        return "zombie" not in Path(f"/proc/{pid}/status").read_text().lower()
    except FileNotFoundError:
        return False


def test_served_names_keep_to_the_wire_alphabet_and_64_characters() -> None:
    assert served_name("up", "get.weather now") == "get_weather_now"
    long = "x" * 100
    shortened = served_name("up", long)
    assert len(f"up_{shortened}") == 64
    assert shortened == served_name("up", long)  # stable: the same upstream tool, the same name
    assert served_name("up", "x" * 99 + "y") != shortened


async def test_a_worker_process_runs_upstream_jobs_and_a_cancel_from_the_front_stops_them_upstream(
    tmp_path: Path,
) -> None:
    marks_dir = tmp_path / "marks"
    marks_dir.mkdir()
    upstream = stdio_upstream(marks_dir)
    env = env_with_testkit(upstreams=json.dumps([upstream.model_dump(mode="json")]))
    settings = make_settings(tmp_path, upstreams=(upstream,), worker="off")
    async with (
        conveyor_worker(tmp_path, signal.SIGTERM, env=env, db=settings.db),
        open_runtime(settings, run_workers=False) as front,
    ):
        added = await front.engine.submit("up_add", {"a": 20, "b": 22}, owner="alice")
        slow = await front.engine.submit(
            "up_slow", {"seconds": 60, "steps": 60, "key": "worker"}, owner="alice"
        )
        with anyio.fail_after(30):
            done = await front.engine.wait(added.job_id, owner="alice", timeout_s=25)
            with front.events.subscribe(slow.job_id) as updates:
                job = await front.engine.get(slow.job_id, owner="alice")
                while job.progress is None:  # running upstream, in the worker's process
                    job = await updates.next()
            canceled = await front.engine.cancel(slow.job_id, owner="alice")
            ended = await front.engine.wait(slow.job_id, owner="alice", timeout_s=25)
            while not (marks_dir / "cancelled-worker").exists():  # noqa: ASYNC110
                await anyio.sleep(0.02)  # the upstream is a third process: its mark is what there is
    assert done.status is JobStatus.COMPLETED
    assert done.result == {"total": 42}
    assert canceled.status in (JobStatus.RUNNING, JobStatus.CANCELED)
    assert ended.status is JobStatus.CANCELED


async def test_an_http_upstream_gets_the_runs_credentials_as_headers_and_never_hands_them_back(
    tmp_path: Path,
) -> None:
    marks_dir = tmp_path / "marks"
    marks_dir.mkdir()
    port = free_port()
    token = "ghp-only-for-this-run-7f3a9c"
    config = UpstreamConfig(
        name="up", url=f"http://127.0.0.1:{port}/mcp", credential_headers={"Authorization": "Bearer {github}"}
    )
    with http_upstream_process(marks_dir, port):
        await until_listening(port)
        async with open_runtime(make_settings(tmp_path, upstreams=(config,))) as runtime:
            direct = await runtime.executor.run("up_authorization", {}, credentials={"github": token})
            job = await runtime.engine.submit(
                "up_authorization", {}, owner="alice", credentials={"github": token}
            )
            done = await runtime.engine.wait(job.job_id, owner="alice", timeout_s=20)
            with pytest.raises(ConveyorError) as missing:
                await runtime.executor.run("up_authorization", {})
            with pytest.raises(ConveyorError) as refused:
                await runtime.executor.run(
                    "up_authorization", {"refuse": True}, credentials={"github": token}
                )
    expected = {"digest": hashlib.sha256(f"Bearer {token}".encode()).hexdigest(), "sent": "[redacted]"}
    assert direct.result == expected
    assert done.result == expected
    assert missing.value.code == ErrorCode.INVALID_ARGUMENTS
    assert missing.value.extra["credential"] == "github"
    assert refused.value.code == ErrorCode.EXECUTION_ERROR
    assert refused.value.to_payload()["message"].endswith("not with [redacted]")
