from __future__ import annotations

import anyio
import pytest
from mcp import Client

from tests import toolkits

pytestmark = pytest.mark.anyio

META_TOOLS = {"jobs_submit", "jobs_status", "jobs_cancel", "jobs_list", "tools_search"}


async def test_list_tools_shows_every_registry_tool_and_the_meta_tools(client: Client) -> None:
    listed = {tool.name: tool for tool in (await client.list_tools()).tools}
    assert {"demo_echo", "demo_sleep", "demo_fail", "demo_add"} <= set(listed)
    assert set(listed) >= META_TOOLS
    assert listed["demo_add"].output_schema is not None
    assert listed["demo_echo"].annotations is not None
    assert listed["demo_echo"].annotations.read_only_hint


async def test_direct_call_returns_structured_output(client: Client) -> None:
    result = await client.call_tool("demo_add", {"a": 2, "b": 3})
    assert not result.is_error
    assert result.structured_content == {"sum": 5.0}


async def test_direct_call_sends_progress_notifications(client: Client) -> None:
    seen: list[tuple[float, float | None]] = []

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        seen.append((progress, total))

    result = await client.call_tool(
        "demo_sleep", {"seconds": 0.05, "steps": 3}, progress_callback=on_progress
    )
    assert not result.is_error
    assert seen[-1] == (3, 3)


async def test_bad_arguments_name_the_argument(client: Client) -> None:
    result = await client.call_tool("demo_add", {"a": "not a number", "b": 1})
    assert result.is_error
    assert result.structured_content is not None
    assert result.structured_content["error"]["code"] == "INVALID_ARGUMENTS"
    assert result.structured_content["error"]["argument"] == "a"


async def test_tool_exception_is_an_execution_error_without_traceback(client: Client) -> None:
    result = await client.call_tool("demo_fail", {"message": "boom"})
    assert result.is_error
    assert result.structured_content is not None
    error = result.structured_content["error"]
    assert error["code"] == "EXECUTION_ERROR"
    assert error["request_id"]
    assert "Traceback" not in str(result.content)


async def test_submit_and_wait_returns_the_finished_job(client: Client) -> None:
    result = await client.call_tool(
        "jobs_submit", {"tool": "demo_add", "arguments": {"a": 1, "b": 1}, "wait_seconds": 5}
    )
    assert not result.is_error
    job = result.structured_content
    assert job is not None
    assert job["status"] == "completed"
    assert job["result"] == {"sum": 2.0}


async def test_cancel_a_running_job(client: Client) -> None:
    toolkits.reset()
    submitted = await client.call_tool("jobs_submit", {"tool": "testkit_hold"})
    job_id = submitted.structured_content["job_id"]  # type: ignore[index]
    with anyio.fail_after(5):
        await toolkits.started.wait()
    canceled = await client.call_tool("jobs_cancel", {"job_id": job_id})
    assert canceled.structured_content["status"] == "canceled"  # type: ignore[index]
