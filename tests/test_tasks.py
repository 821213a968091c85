"""MCP tasks in both eras, on the wire (a bare JSON-RPC client; the SDK client refuses task shapes)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp import Client
from mcp_types import INVALID_PARAMS, METHOD_NOT_FOUND, MISSING_REQUIRED_CLIENT_CAPABILITY

from conveyor.mcp_server import build_server
from conveyor.runtime import Runtime, open_runtime
from tests import toolkits
from tests.conftest import make_settings
from tests.raw_mcp import LEGACY, MODERN, RawClient, RawError, raw_client

pytestmark = pytest.mark.anyio


@pytest.fixture
async def legacy(runtime: Runtime) -> AsyncIterator[RawClient]:
    async with raw_client(build_server(runtime), era=LEGACY) as client:
        yield client


@pytest.fixture
async def modern(runtime: Runtime) -> AsyncIterator[RawClient]:
    async with raw_client(build_server(runtime), era=MODERN, extensions=True) as client:
        yield client


async def create_2025(
    client: RawClient, tool: str, arguments: dict[str, Any], **extra: Any
) -> dict[str, Any]:
    params = {"name": tool, "arguments": arguments, "task": {"ttl": 60_000}, **extra}
    created = await client.request("tools/call", params)
    return created["task"]


async def until_terminal_2026(client: RawClient, task_id: str) -> dict[str, Any]:
    with anyio.fail_after(15):
        while True:
            task = await client.request("tasks/get", {"taskId": task_id})
            if task["status"] != "working":
                return task
            await anyio.sleep(0.01)  # polling is the 2026 client's contract; this is that client


# -- 2025-11-25 --------------------------------------------------------------------------------


async def test_2025_initialize_declares_the_tasks_capability(runtime: Runtime) -> None:
    async with raw_client(build_server(runtime), era=LEGACY) as client:
        answer = await client.request(
            "initialize",
            {"protocolVersion": LEGACY, "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}},
        )
    assert answer["capabilities"]["tasks"] == {"list": {}, "cancel": {}, "requests": {"tools": {"call": {}}}}


async def test_2025_tools_list_says_which_tools_run_as_tasks(legacy: RawClient) -> None:
    tools = {tool["name"]: tool for tool in (await legacy.request("tools/list"))["tools"]}
    assert tools["demo_sleep"]["execution"] == {"taskSupport": "optional"}
    assert tools["testkit_long"]["execution"] == {"taskSupport": "required"}
    assert tools["testkit_quick"]["execution"] == {"taskSupport": "forbidden"}
    assert tools["jobs_submit"]["execution"] == {"taskSupport": "forbidden"}


async def test_2025_a_task_is_created_polled_and_its_result_is_what_tools_call_returns(
    legacy: RawClient,
) -> None:
    task = await create_2025(legacy, "demo_add", {"a": 2, "b": 3})
    assert task["status"] == "working"
    assert task["ttl"] == 60_000
    assert task["pollInterval"] > 0
    polled = await legacy.request("tasks/get", {"taskId": task["taskId"]})
    assert polled["taskId"] == task["taskId"]
    result = await legacy.request("tasks/result", {"taskId": task["taskId"]})
    direct = await legacy.request("tools/call", {"name": "demo_add", "arguments": {"a": 2, "b": 3}})
    assert result["_meta"]["io.modelcontextprotocol/related-task"] == {"taskId": task["taskId"]}
    assert {k: v for k, v in result.items() if k != "_meta"} == direct
    assert (await legacy.request("tasks/get", {"taskId": task["taskId"]}))["status"] == "completed"


async def test_2025_a_tool_error_is_a_failed_task_whose_result_is_the_error(legacy: RawClient) -> None:
    task = await create_2025(legacy, "demo_fail", {"message": "boom"})
    result = await legacy.request("tasks/result", {"taskId": task["taskId"]})
    assert result["isError"] is True
    assert result["structuredContent"]["error"]["code"] == "EXECUTION_ERROR"
    assert (await legacy.request("tasks/get", {"taskId": task["taskId"]}))["status"] == "failed"


async def test_2025_status_and_progress_notifications_follow_the_task(legacy: RawClient) -> None:
    task = await create_2025(
        legacy, "demo_sleep", {"seconds": 0.05, "steps": 2}, _meta={"progressToken": "tok"}
    )
    with anyio.fail_after(10):
        progress = await legacy.next_notification("notifications/progress")
        while True:
            status = await legacy.next_notification("notifications/tasks/status")
            if status["params"]["status"] == "completed":
                break
    assert progress["params"]["progressToken"] == "tok"
    assert status["params"]["taskId"] == task["taskId"]


async def test_2025_tasks_list_pages_through_the_callers_tasks_only(
    legacy: RawClient, runtime: Runtime
) -> None:
    mine = {(await create_2025(legacy, "demo_echo", {"text": str(n)}))["taskId"] for n in range(3)}
    await runtime.engine.submit("demo_echo", {"text": "not a task"}, owner="local")
    await runtime.engine.submit("demo_echo", {"text": "someone else"}, owner="key_other", kind="task")
    listed = await legacy.request("tasks/list")
    assert {task["taskId"] for task in listed["tasks"]} == mine
    assert "nextCursor" not in listed
    with pytest.raises(RawError) as bad:
        await legacy.request("tasks/list", {"cursor": "not-a-cursor"})
    assert bad.value.code == INVALID_PARAMS


async def test_2025_cancel_makes_a_task_cancelled_before_answering(legacy: RawClient) -> None:
    toolkits.reset()
    task = await create_2025(legacy, "testkit_hold", {})
    with anyio.fail_after(5):
        await toolkits.started.wait()
    cancelled = await legacy.request("tasks/cancel", {"taskId": task["taskId"]})
    assert cancelled["status"] == "cancelled"
    with pytest.raises(RawError) as again:
        await legacy.request("tasks/cancel", {"taskId": task["taskId"]})
    assert again.value.code == INVALID_PARAMS


async def test_2025_unknown_tasks_and_wrong_task_use_are_protocol_errors(legacy: RawClient) -> None:
    for method in ("tasks/get", "tasks/result", "tasks/cancel"):
        with pytest.raises(RawError) as unknown:
            await legacy.request(method, {"taskId": "job_unknown"})
        assert unknown.value.code == INVALID_PARAMS
    with pytest.raises(RawError) as required:
        await legacy.request("tools/call", {"name": "testkit_long", "arguments": {}})
    assert required.value.code == METHOD_NOT_FOUND
    with pytest.raises(RawError) as forbidden:
        await create_2025(legacy, "testkit_quick", {})
    assert forbidden.value.code == METHOD_NOT_FOUND


async def test_a_task_is_a_job_the_meta_tools_can_read(legacy: RawClient, runtime: Runtime) -> None:
    task = await create_2025(legacy, "demo_add", {"a": 1, "b": 1})
    await legacy.request("tasks/result", {"taskId": task["taskId"]})
    async with Client(build_server(runtime), mode="auto") as client:
        status = await client.call_tool("jobs_status", {"job_id": task["taskId"]})
    assert status.structured_content is not None
    assert status.structured_content["status"] == "completed"
    assert status.structured_content["result"] == {"sum": 2.0}


# -- 2026-07-28 extension ----------------------------------------------------------------------


async def test_2026_a_required_tool_becomes_a_task_with_the_result_inlined(modern: RawClient) -> None:
    created = await modern.request("tools/call", {"name": "testkit_long", "arguments": {"seconds": 0.01}})
    assert created["resultType"] == "task"
    assert created["status"] == "working"
    assert created["ttlMs"] > 0
    assert created["pollIntervalMs"] > 0
    done = await until_terminal_2026(modern, created["taskId"])
    assert done["status"] == "completed"
    assert done["result"]["resultType"] == "complete"
    assert done["result"]["content"][0]["text"] == '{"slept": 0.01}'


async def test_2026_a_tool_error_is_a_completed_task_with_is_error(
    modern: RawClient, runtime: Runtime
) -> None:
    job = await runtime.engine.submit("demo_fail", {"message": "x"}, owner="local", kind="task")
    done = await until_terminal_2026(modern, job.job_id)
    assert done["status"] == "completed"
    assert done["result"]["isError"] is True


async def test_2026_quick_tools_answer_inline_even_with_the_extension(modern: RawClient) -> None:
    answer = await modern.request("tools/call", {"name": "demo_echo", "arguments": {"text": "hi"}})
    assert answer["resultType"] == "complete"
    assert answer["content"][0]["text"] == "hi"


async def test_2026_cancel_is_acknowledged_and_the_task_ends_cancelled(modern: RawClient) -> None:
    toolkits.reset()
    created = await modern.request("tools/call", {"name": "testkit_long", "arguments": {"seconds": 30}})
    ack = await modern.request("tasks/cancel", {"taskId": created["taskId"]})
    assert ack["resultType"] == "complete"
    assert (await until_terminal_2026(modern, created["taskId"]))["status"] == "cancelled"
    assert (await modern.request("tasks/cancel", {"taskId": "job_unknown"}))["resultType"] == "complete"


async def test_2026_a_client_without_the_extension_gets_32021_for_task_only_tools(runtime: Runtime) -> None:
    async with raw_client(build_server(runtime), era=MODERN, extensions=False) as client:
        with pytest.raises(RawError) as refused:
            await client.request("tools/call", {"name": "testkit_long", "arguments": {}})
    assert refused.value.code == MISSING_REQUIRED_CLIENT_CAPABILITY


async def test_2026_has_no_tasks_result_or_tasks_list(modern: RawClient) -> None:
    for method in ("tasks/result", "tasks/list"):
        with pytest.raises(RawError) as missing:
            await modern.request(method, {"taskId": "job_x"} if method == "tasks/result" else {})
        assert missing.value.code == METHOD_NOT_FOUND


async def test_tasks_of_another_principal_are_not_found(modern: RawClient, runtime: Runtime) -> None:
    job = await runtime.engine.submit("demo_echo", {"text": "x"}, owner="key_other", kind="task")
    with pytest.raises(RawError) as hidden:
        await modern.request("tasks/get", {"taskId": job.job_id})
    assert hidden.value.code == INVALID_PARAMS


async def test_restarting_mid_task_loses_nothing(tmp_path: Path) -> None:
    from conveyor.runtime import open_runtime
    from tests.conftest import make_settings

    settings = make_settings(tmp_path, concurrency=1)
    async with open_runtime(settings) as first:
        toolkits.reset()
        async with raw_client(build_server(first), era=LEGACY) as client:
            held = await create_2025(client, "testkit_hold", {})
            waiting = await create_2025(client, "demo_add", {"a": 1, "b": 2})
            with anyio.fail_after(5):
                await toolkits.started.wait()
    async with open_runtime(settings) as second, raw_client(build_server(second), era=LEGACY) as client:
        result = await client.request("tasks/result", {"taskId": waiting["taskId"]})
        assert result["structuredContent"] == {"sum": 3.0}
        interrupted = await client.request("tasks/get", {"taskId": held["taskId"]})
        assert interrupted["status"] == "failed"  # not idempotent: WORKER_LOST, per its retry policy
        listed = await client.request("tasks/list")
        assert {t["taskId"] for t in listed["tasks"]} == {held["taskId"], waiting["taskId"]}


async def test_2025_a_ttl_that_is_not_a_positive_number_falls_back_to_the_retention(
    legacy: RawClient, runtime: Runtime
) -> None:
    retention_ms = int(runtime.settings.retention_hours * 3600 * 1000)
    for ttl in (float("inf"), True, -5, "soon"):
        created = await legacy.request(
            "tools/call", {"name": "demo_echo", "arguments": {"text": "x"}, "task": {"ttl": ttl}}
        )
        assert created["task"]["ttl"] == retention_ms, ttl


async def test_2025_an_unknown_tool_as_a_task_is_invalid_params(legacy: RawClient) -> None:
    with pytest.raises(RawError) as unknown:
        await create_2025(legacy, "nope_nothing", {})
    assert unknown.value.code == INVALID_PARAMS


async def test_2026_a_long_call_of_a_quick_tool_becomes_a_task_within_the_threshold(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, task_inline_threshold_ms=300)
    async with (
        open_runtime(settings) as runtime,
        raw_client(build_server(runtime), era=MODERN, extensions=True) as modern,
    ):
        for _ in range(3):  # its history: a quick tool, answered inline
            quick = await modern.request(
                "tools/call", {"name": "demo_sleep", "arguments": {"seconds": 0.01, "steps": 1}}
            )
            assert quick["resultType"] == "complete"
        asked = anyio.current_time()
        long = await modern.request(
            "tools/call", {"name": "demo_sleep", "arguments": {"seconds": 1.5, "steps": 3}}
        )
        answered = anyio.current_time() - asked
        assert long["resultType"] == "task"
        assert answered < 0.3 + 0.5  # the threshold, and no more than a moment past it
        done = await until_terminal_2026(modern, long["taskId"])
        job = await runtime.engine.get(long["taskId"], owner=None)
    assert done["status"] == "completed"
    assert done["result"]["structuredContent"] == {"slept_seconds": 1.5, "steps": 3}
    assert job.kind == "task"  # a durable job, visible to jobs_* and REST too
