"""The jobs meta-tools and every registry tool over MCP, in both protocol eras."""

from __future__ import annotations

import re
import secrets
import threading
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp import Client
from mcp.shared.exceptions import MCPError
from mcp_types import INVALID_PARAMS, METHOD_NOT_FOUND, MISSING_REQUIRED_CLIENT_CAPABILITY

from conveyor import schemas
from conveyor.events import Subscription
from conveyor.mcp_server import build_server
from conveyor.runtime import Runtime, open_runtime
from conveyor.schemas import JobStatusRequest, SubmitJobRequest
from tests import toolkits
from tests.conftest import ERAS, make_settings
from tests.mcp_calls import call, call_error

pytestmark = [pytest.mark.anyio, pytest.mark.usefixtures("fresh_toolkit_events")]

JOB_ID = re.compile(r"^job_[0-9a-f]{32}$")
META_TOOLS = {"jobs_submit", "jobs_status", "jobs_cancel", "jobs_list", "tools_search"}
TERMINAL = {"completed", "failed", "canceled", "timeout"}
UNKNOWN_JOB = "job_" + "0" * 32


@pytest.fixture(params=ERAS)
def era(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@asynccontextmanager
async def connect(tmp_path: Path, era: str, **overrides: Any) -> AsyncIterator[tuple[Runtime, Client]]:
    """A runtime with its own settings (e.g. one worker) and a client of the given era."""
    async with (
        open_runtime(make_settings(tmp_path, **overrides)) as runtime,
        Client(build_server(runtime), mode=era) as client,
    ):
        yield runtime, client


def text_of(result: Any) -> str:
    assert len(result.content) == 1
    return str(result.content[0].text)


async def submit(client: Client, tool: str, arguments: dict[str, Any] | None = None, **extra: Any) -> str:
    job = await call(client, "jobs_submit", {"tool": tool, "arguments": arguments or {}, **extra})
    return str(job["job_id"])


async def finished(client: Client, job_id: str) -> dict[str, Any]:
    with anyio.fail_after(10):
        job = await call(client, "jobs_status", {"job_id": job_id, "wait_seconds": 10})
    assert job["status"] in TERMINAL
    return job


async def started_hold(client: Client, tool: str = "testkit_hold") -> str:
    """Submit a held job and return once its tool is running."""
    job_id = await submit(client, tool)
    with anyio.fail_after(5):
        await toolkits.started.wait()
    return job_id


def waiter_subscribed(runtime: Runtime, monkeypatch: pytest.MonkeyPatch) -> anyio.Event:
    """An event set once someone subscribes to one job's updates (a waiter is in place)."""
    seen = anyio.Event()
    original = runtime.events.subscribe

    @contextmanager
    def spy(job_id: str | None = None) -> Iterator[Subscription]:
        with original(job_id) as subscription:
            if job_id is not None:
                seen.set()
            yield subscription

    monkeypatch.setattr(runtime.events, "subscribe", spy)
    return seen


# -- every tool, both eras -----------------------------------------------------------------


async def test_tools_list_has_every_meta_tool_with_input_and_output_schemas(client: Client) -> None:
    listed = {tool.name: tool for tool in (await client.list_tools()).tools}
    assert set(listed) >= META_TOOLS
    for name in META_TOOLS:
        assert listed[name].input_schema["type"] == "object"
        assert listed[name].output_schema is not None
    assert listed["jobs_submit"].input_schema["required"] == ["tool"]
    assert listed["jobs_status"].input_schema["required"] == ["job_id"]
    assert listed["jobs_cancel"].input_schema["required"] == ["job_id"]


async def test_every_registry_tool_can_be_called_directly(
    client: Client, runtime: Runtime, tmp_path: Path
) -> None:
    toolkits.release.set()  # the hold tools return at once
    toolkits.reset_sync()
    toolkits.sync_release.set()
    key = secrets.token_hex(8)
    # tool -> (arguments, expected text, or an error code)
    expected: dict[str, tuple[dict[str, Any], str | None, str | None]] = {
        "demo_echo": ({"text": "hi"}, "hi", None),
        "demo_sleep": ({"seconds": 0, "steps": 1}, '{"slept_seconds": 0.0, "steps": 1}', None),
        "demo_fail": ({"message": "boom"}, None, "EXECUTION_ERROR"),
        "demo_add": ({"a": 1, "b": 2}, '{"sum": 3.0}', None),
        "testkit_hold": ({}, "released", None),
        "testkit_hold_uncancellable": ({}, "released", None),
        "testkit_hold_observed": ({}, "released", None),
        "testkit_blocking_sum": ({"numbers": [1, 2, 3]}, "6", None),
        "testkit_big_result": ({"size": 3}, "xxx", None),
        "testkit_pid": ({}, None, None),
        # A direct call is one attempt: the retry policy is for jobs.
        "testkit_flaky": ({"key": key}, None, "EXECUTION_ERROR"),
        "testkit_thread_ident": ({}, None, None),
        "testkit_quick": ({}, "quick", None),
        "testkit_sleep_uncancellable": ({"seconds": 0}, "slept", None),
        "testkit_sync_checking": ({}, "released", None),
        "testkit_sync_unchecking": ({}, "released", None),
        "testkit_record_run": ({"directory": str(tmp_path), "key": "k"}, "k", None),
        "testkit_nap": ({"seconds": 0}, "rested", None),
        "testkit_idempotent_nap": ({"seconds": 0}, None, None),
        # Its database cannot be reached here: the tool fails, coded.
        "testkit_record_run_in_table": (
            {"db": "postgresql://nobody@127.0.0.1:9/none", "key": "k"},
            None,
            "EXECUTION_ERROR",
        ),
        "testkit_unruly": ({"kind": "nan"}, None, "EXECUTION_ERROR"),
        "testkit_hold_big": ({"size": 2}, "xx", None),
        # No credentials given: the tool sees none.
        "testkit_credential_digest": ({"name": "api"}, '{"digest": null, "names": ""}', None),
    }
    task_only = {"testkit_long"}  # a direct call of a task-required tool is a protocol error
    listed = {tool.name for tool in (await client.list_tools()).tools} - META_TOOLS
    assert listed == {tool.wire_name for tool in runtime.registry}
    assert listed == set(expected) | task_only, "give every registry tool sample arguments in this table"
    for name in task_only:
        with pytest.raises(MCPError) as refused:
            await client.call_tool(name, {})
        assert refused.value.error.code in (METHOD_NOT_FOUND, MISSING_REQUIRED_CLIENT_CAPABILITY)
    for name, (arguments, text, code) in expected.items():
        result = await client.call_tool(name, arguments)
        if code is not None:
            assert result.is_error, name
            assert result.structured_content is not None
            assert result.structured_content["error"]["code"] == code, name
        else:
            assert not result.is_error, (name, result.content)
            if text is not None:
                assert text_of(result) == text, name
    again = await client.call_tool("testkit_flaky", {"key": key})
    assert text_of(again) == "2"


async def test_every_registry_tool_runs_as_a_job(client: Client, runtime: Runtime, tmp_path: Path) -> None:
    toolkits.release.set()
    toolkits.reset_sync()
    toolkits.sync_release.set()
    samples: dict[str, dict[str, Any]] = {
        "demo_echo": {"text": "hi"},
        "demo_sleep": {"seconds": 0, "steps": 1},
        "demo_fail": {"message": "boom"},
        "demo_add": {"a": 1, "b": 2},
        "testkit_blocking_sum": {"numbers": [4, 5]},
        "testkit_big_result": {"size": 2},
        "testkit_flaky": {"key": secrets.token_hex(8)},
        "testkit_long": {"seconds": 0},
        "testkit_sleep_uncancellable": {"seconds": 0},
        "testkit_record_run": {"directory": str(tmp_path), "key": "k"},
        "testkit_nap": {"seconds": 0},
        "testkit_idempotent_nap": {"seconds": 0},
        "testkit_record_run_in_table": {"db": "postgresql://nobody@127.0.0.1:9/none", "key": "k"},
        "testkit_unruly": {"kind": "progress"},
        "testkit_hold_big": {"size": 2},
        "testkit_credential_digest": {"name": "api"},
    }
    samples.update({tool.wire_name: {} for tool in runtime.registry if tool.wire_name not in samples})
    for name, arguments in samples.items():
        job = await call(client, "jobs_submit", {"tool": name, "arguments": arguments, "wait_seconds": 10})
        expected = "failed" if name in ("demo_fail", "testkit_record_run_in_table") else "completed"
        assert job["status"] == expected, (name, job)
        assert job["tool"] == name
    listed = await call(client, "jobs_list", {"limit": 100})
    assert listed["pagination"]["total"] == len(samples)


# -- jobs_submit -------------------------------------------------------------------------


async def test_submit_returns_a_queued_job_with_its_position_in_the_queue(tmp_path: Path, era: str) -> None:
    async with connect(tmp_path, era, concurrency=1) as (_runtime, client):
        holder = await started_hold(client)
        first = await call(client, "jobs_submit", {"tool": "demo_echo", "arguments": {"text": "1"}})
        second = await call(client, "jobs_submit", {"tool": "demo_echo", "arguments": {"text": "2"}})
        for job in (first, second):
            assert JOB_ID.match(job["job_id"])
            assert job["status"] == "queued"
            assert "result" not in job
            assert "started_at" not in job
        assert (first["position_in_queue"], second["position_in_queue"]) == (1, 2)
        assert first["job_id"] != second["job_id"]

        await call(client, "jobs_cancel", {"job_id": first["job_id"]})
        moved_up = await call(client, "jobs_status", {"job_id": second["job_id"]})
        assert moved_up["position_in_queue"] == 1

        toolkits.release.set()
        assert (await finished(client, holder))["result"] == "released"
        done = await finished(client, second["job_id"])
        assert done["status"] == "completed"
        assert done["result"] == "2"
        assert "position_in_queue" not in done


async def test_submit_with_wait_returns_the_finished_job_inline(client: Client) -> None:
    job = await call(
        client, "jobs_submit", {"tool": "demo_echo", "arguments": {"text": "now"}, "wait_seconds": 10}
    )
    assert job["status"] == "completed"
    assert job["result"] == "now"
    assert job["attempts"] == 1
    assert job["execution_time_ms"] >= 0
    assert job["completed_at"] >= job["started_at"] >= job["created_at"]


async def test_submit_learns_the_estimated_duration_from_previous_runs(client: Client) -> None:
    arguments = {"seconds": 0.02, "steps": 1}
    first = await call(client, "jobs_submit", {"tool": "demo_sleep", "arguments": arguments})
    assert first["estimated_duration_ms"] is None  # no history yet
    await finished(client, first["job_id"])
    for _ in range(2):
        job = await call(
            client, "jobs_submit", {"tool": "demo_sleep", "arguments": arguments, "wait_seconds": 10}
        )
        assert job["status"] == "completed"
    estimated = await call(client, "jobs_submit", {"tool": "demo_sleep", "arguments": arguments})
    assert estimated["estimated_duration_ms"] >= 15
    other_tool = await call(client, "jobs_submit", {"tool": "demo_echo", "arguments": {"text": "x"}})
    assert other_tool["estimated_duration_ms"] is None
    await finished(client, estimated["job_id"])


async def test_submit_keeps_the_requested_timeout_on_the_job(client: Client) -> None:
    job = await call(
        client,
        "jobs_submit",
        {"tool": "demo_echo", "arguments": {"text": "x"}, "timeout_ms": 5000, "wait_seconds": 10},
    )
    assert job["timeout_ms"] == 5000


# -- jobs_status -------------------------------------------------------------------------


async def test_status_without_wait_answers_the_current_state_at_once(client: Client) -> None:
    job_id = await started_hold(client)
    job = await call(client, "jobs_status", {"job_id": job_id})
    assert job["status"] == "running"
    assert job["attempts"] == 1
    assert "completed_at" not in job
    assert "result" not in job
    toolkits.release.set()
    assert (await finished(client, job_id))["status"] == "completed"


async def test_status_with_wait_answers_once_the_job_finishes(
    client: Client, runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    job_id = await started_hold(client)
    waiting = waiter_subscribed(runtime, monkeypatch)
    answers: list[dict[str, Any]] = []

    async def wait_for_it() -> None:
        answers.append(await call(client, "jobs_status", {"job_id": job_id, "wait_seconds": 20}))

    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            tg.start_soon(wait_for_it)
            await waiting.wait()
            toolkits.release.set()
    assert answers[0]["status"] == "completed"
    assert answers[0]["result"] == "released"


async def test_status_with_wait_answers_the_running_job_when_the_wait_runs_out(client: Client) -> None:
    job_id = await started_hold(client)
    with anyio.fail_after(5):
        job = await call(client, "jobs_status", {"job_id": job_id, "wait_seconds": 0.05})
    assert job["status"] == "running"
    toolkits.release.set()
    await finished(client, job_id)


async def test_wait_seconds_over_25_is_capped_not_rejected(
    client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert JobStatusRequest(job_id="x", wait_seconds=3600).wait_seconds == 25
    assert SubmitJobRequest(tool="x", wait_seconds=3600).wait_seconds == 25
    done = await call(
        client, "jobs_submit", {"tool": "demo_echo", "arguments": {"text": "x"}, "wait_seconds": 3600}
    )
    assert done["status"] == "completed"
    assert (await call(client, "jobs_status", {"job_id": done["job_id"], "wait_seconds": 1e9}))[
        "status"
    ] == "completed"

    # With the cap lowered, a huge wait on a job that never ends returns after the cap.
    monkeypatch.setattr(schemas, "MAX_WAIT_SECONDS", 0.05)
    job_id = await started_hold(client)
    with anyio.fail_after(5):
        job = await call(client, "jobs_status", {"job_id": job_id, "wait_seconds": 3600})
    assert job["status"] == "running"
    toolkits.release.set()
    await finished(client, job_id)


async def test_status_shows_the_progress_a_running_job_reported(client: Client, runtime: Runtime) -> None:
    with runtime.events.subscribe() as updates, anyio.fail_after(5):
        job_id = await started_hold(client)
        while (await updates.next()).progress is None:
            pass
    job = await call(client, "jobs_status", {"job_id": job_id})
    assert job["status"] == "running"
    assert job["progress"] == {"current_step": 1, "total_steps": 2, "percentage": 50.0, "message": "holding"}
    listed = await call(client, "jobs_list", {"status": "running"})
    assert listed["jobs"][0]["progress"]["percentage"] == 50.0
    toolkits.release.set()
    assert (await finished(client, job_id))["status"] == "completed"


async def test_status_of_an_unknown_job_is_job_not_found(client: Client) -> None:
    assert (await call_error(client, "jobs_status", {"job_id": UNKNOWN_JOB}))["code"] == "JOB_NOT_FOUND"
    waited = await call_error(client, "jobs_status", {"job_id": UNKNOWN_JOB, "wait_seconds": 1})
    assert waited["code"] == "JOB_NOT_FOUND"
    assert (await call_error(client, "jobs_cancel", {"job_id": UNKNOWN_JOB}))["code"] == "JOB_NOT_FOUND"


# -- jobs_list ---------------------------------------------------------------------------


async def test_list_filters_by_status_and_tool_and_pages_newest_first(client: Client) -> None:
    echoes = [await submit(client, "demo_echo", {"text": str(i)}) for i in range(3)]
    failed = await submit(client, "demo_fail", {"message": "no"})
    for job_id in [*echoes, failed]:
        await finished(client, job_id)
    running = await started_hold(client)
    newest_first = [running, failed, *reversed(echoes)]

    everything = await call(client, "jobs_list", {})
    assert [job["job_id"] for job in everything["jobs"]] == newest_first
    assert everything["pagination"] == {"limit": 20, "offset": 0, "total": 5}

    completed = await call(client, "jobs_list", {"status": "completed"})
    assert {job["job_id"] for job in completed["jobs"]} == set(echoes)
    assert completed["pagination"]["total"] == 3
    by_tool = await call(client, "jobs_list", {"tool": "demo_fail"})
    assert [job["job_id"] for job in by_tool["jobs"]] == [failed]
    assert by_tool["jobs"][0]["error"]["code"] == "EXECUTION_ERROR"
    both = await call(client, "jobs_list", {"status": "completed", "tool": "demo_fail"})
    assert both == {"jobs": [], "pagination": {"limit": 20, "offset": 0, "total": 0}}
    assert (await call(client, "jobs_list", {"status": "running"}))["jobs"][0]["job_id"] == running

    pages = [await call(client, "jobs_list", {"limit": 2, "offset": offset}) for offset in (0, 2, 4, 6)]
    assert [len(page["jobs"]) for page in pages] == [2, 2, 1, 0]
    assert all(page["pagination"]["total"] == 5 for page in pages)
    assert [job["job_id"] for page in pages for job in page["jobs"]] == newest_first

    toolkits.release.set()
    await finished(client, running)


async def test_list_limit_over_100_or_bad_filters_are_invalid_arguments(client: Client) -> None:
    assert (await call(client, "jobs_list", {"limit": 100}))["pagination"]["limit"] == 100
    for arguments, argument in [
        ({"limit": 101}, "limit"),
        ({"limit": 0}, "limit"),
        ({"offset": -1}, "offset"),
        ({"status": "sleeping"}, "status"),
        ({"owner": "someone"}, "owner"),
    ]:
        error = await call_error(client, "jobs_list", arguments)
        assert error["code"] == "INVALID_ARGUMENTS", arguments
        assert error["argument"] == argument


# -- jobs_cancel -------------------------------------------------------------------------


async def test_cancel_a_queued_job_cancels_it_at_once_and_it_never_runs(tmp_path: Path, era: str) -> None:
    async with connect(tmp_path, era, concurrency=1) as (_runtime, client):
        holder = await started_hold(client)
        queued = await submit(client, "demo_echo", {"text": "never"})
        canceled = await call(client, "jobs_cancel", {"job_id": queued})
        assert canceled["status"] == "canceled"
        assert canceled["error"]["code"] == "CANCELED"
        assert "position_in_queue" not in canceled

        toolkits.release.set()
        assert (await finished(client, holder))["status"] == "completed"
        after = await call(client, "jobs_status", {"job_id": queued})
        assert after["status"] == "canceled"
        assert after["attempts"] == 0
        assert "started_at" not in after
        assert "result" not in after


async def test_cancel_a_running_cancellable_job_ends_it_canceled(client: Client) -> None:
    job_id = await started_hold(client, "testkit_hold_observed")
    with anyio.fail_after(5):
        canceled = await call(client, "jobs_cancel", {"job_id": job_id})
        await toolkits.interrupted.wait()
    assert canceled["status"] == "canceled"
    assert canceled["error"]["code"] == "CANCELED"
    assert canceled["execution_time_ms"] >= 0
    toolkits.release.set()
    assert (await call(client, "jobs_status", {"job_id": job_id}))["status"] == "canceled"


async def test_cancel_a_running_non_cancellable_job_is_refused(client: Client) -> None:
    job_id = await started_hold(client, "testkit_hold_uncancellable")
    error = await call_error(client, "jobs_cancel", {"job_id": job_id})
    assert error["code"] == "CANNOT_CANCEL_RUNNING"
    assert (await call(client, "jobs_status", {"job_id": job_id}))["status"] == "running"
    toolkits.release.set()
    done = await finished(client, job_id)
    assert done["status"] == "completed"
    assert done["result"] == "released"


async def test_cancel_a_finished_job_returns_it_unchanged(client: Client) -> None:
    completed = await finished(client, await submit(client, "demo_echo", {"text": "x"}))
    failed = await finished(client, await submit(client, "demo_fail", {"message": "x"}))
    for job in (completed, failed):
        assert await call(client, "jobs_cancel", {"job_id": job["job_id"]}) == job
        assert await call(client, "jobs_status", {"job_id": job["job_id"]}) == job

    running = await started_hold(client)
    canceled = await call(client, "jobs_cancel", {"job_id": running})
    assert await call(client, "jobs_cancel", {"job_id": running}) == canceled


# -- timeouts ----------------------------------------------------------------------------


async def test_a_job_past_its_timeout_ends_timeout_without_retries(client: Client) -> None:
    job = await call(
        client,
        "jobs_submit",
        {
            "tool": "demo_sleep",
            "arguments": {"seconds": 30, "steps": 1},
            "timeout_ms": 20,
            "wait_seconds": 10,
        },
    )
    assert job["status"] == "timeout"
    assert job["error"]["code"] == "EXECUTION_TIMEOUT"
    assert job["error"]["retryable"] is True
    assert job["attempts"] == 1  # demo_sleep has a retry policy, but a timeout is not retried
    assert "result" not in job


async def test_a_job_of_a_tool_without_retry_times_out_after_one_attempt(client: Client) -> None:
    job = await call(client, "jobs_submit", {"tool": "testkit_hold", "timeout_ms": 20, "wait_seconds": 10})
    assert job["status"] == "timeout"
    assert job["error"]["code"] == "EXECUTION_TIMEOUT"
    assert job["attempts"] == 1


async def test_a_direct_call_past_the_default_timeout_is_execution_timeout(tmp_path: Path, era: str) -> None:
    async with connect(tmp_path, era, default_timeout_ms=20) as (_runtime, client):
        error = await call_error(client, "testkit_hold")
        assert error["code"] == "EXECUTION_TIMEOUT"
        assert error["timeout_ms"] == 20
        toolkits.reset()
        error = await call_error(client, "testkit_hold_uncancellable")
        assert error["code"] == "EXECUTION_TIMEOUT"


# -- bad input ---------------------------------------------------------------------------

BAD_ADD_ARGUMENTS = [
    pytest.param({"a": 1}, "b", id="missing"),
    pytest.param({"a": "one", "b": 2}, "a", id="wrong-type"),
    pytest.param({"a": 1, "b": 2, "c": 3}, "c", id="unknown"),
    pytest.param({"a": None, "b": 2}, "a", id="null"),
]


@pytest.mark.parametrize(("arguments", "argument"), BAD_ADD_ARGUMENTS)
async def test_bad_arguments_of_a_direct_call_are_invalid_arguments_naming_the_argument(
    client: Client, arguments: dict[str, Any], argument: str
) -> None:
    error = await call_error(client, "demo_add", arguments)
    assert error["code"] == "INVALID_ARGUMENTS"
    assert error["argument"] == argument
    assert error["retryable"] is False


@pytest.mark.parametrize(("arguments", "argument"), BAD_ADD_ARGUMENTS)
async def test_bad_arguments_of_a_submit_are_invalid_arguments_and_no_job_is_made(
    client: Client, arguments: dict[str, Any], argument: str
) -> None:
    error = await call_error(client, "jobs_submit", {"tool": "demo_add", "arguments": arguments})
    assert error["code"] == "INVALID_ARGUMENTS"
    assert error["argument"] == argument
    assert (await call(client, "jobs_list", {}))["pagination"]["total"] == 0


@pytest.mark.parametrize(
    ("tool", "arguments", "argument"),
    [
        ("jobs_submit", {}, "tool"),
        ("jobs_submit", {"tool": ""}, "tool"),
        ("jobs_submit", {"tool": "demo_echo", "arguments": "text"}, "arguments"),
        ("jobs_submit", {"tool": "demo_echo", "arguments": {"text": "x"}, "timeout_ms": 0}, "timeout_ms"),
        ("jobs_submit", {"tool": "demo_echo", "arguments": {"text": "x"}, "priority": 1}, "priority"),
        (
            "jobs_submit",
            {"tool": "demo_echo", "arguments": {"text": "x"}, "webhook_url": "ftp://x"},
            "webhook_url",
        ),
        ("jobs_status", {}, "job_id"),
        ("jobs_status", {"job_id": UNKNOWN_JOB, "wait_seconds": "soon"}, "wait_seconds"),
        ("jobs_cancel", {"job_id": UNKNOWN_JOB, "force": True}, "force"),
    ],
)
async def test_bad_arguments_of_a_meta_tool_are_invalid_arguments_naming_the_argument(
    client: Client, tool: str, arguments: dict[str, Any], argument: str
) -> None:
    error = await call_error(client, tool, arguments)
    assert error["code"] == "INVALID_ARGUMENTS"
    assert error["argument"] == argument


async def test_submit_of_an_unknown_tool_is_a_tool_not_found_result(client: Client) -> None:
    error = await call_error(client, "jobs_submit", {"tool": "demo_nope"})
    assert error["code"] == "TOOL_NOT_FOUND"


async def test_direct_call_of_an_unknown_tool_is_a_protocol_error(client: Client) -> None:
    with pytest.raises(MCPError) as caught:
        await client.call_tool("demo_nope", {})
    assert caught.value.error.code == INVALID_PARAMS
    assert isinstance(caught.value.error.data, dict)
    assert caught.value.error.data["code"] == "TOOL_NOT_FOUND"


async def test_arguments_and_results_over_the_size_limits_are_payload_too_large(
    tmp_path: Path, era: str
) -> None:
    async with connect(tmp_path, era, max_argument_bytes=200, max_result_bytes=200) as (_, client):
        big_text = {"text": "x" * 300}
        assert (await call_error(client, "demo_echo", big_text))["code"] == "PAYLOAD_TOO_LARGE"
        submitted = await call_error(client, "jobs_submit", {"tool": "demo_echo", "arguments": big_text})
        assert submitted["code"] == "PAYLOAD_TOO_LARGE"
        assert (await call(client, "jobs_list", {}))["pagination"]["total"] == 0

        assert (await call_error(client, "testkit_big_result", {"size": 300}))["code"] == "PAYLOAD_TOO_LARGE"
        assert text_of(await client.call_tool("testkit_big_result", {"size": 100})) == "x" * 100
        job = await call(
            client,
            "jobs_submit",
            {"tool": "testkit_big_result", "arguments": {"size": 300}, "wait_seconds": 10},
        )
        assert job["status"] == "failed"
        assert job["error"]["code"] == "PAYLOAD_TOO_LARGE"


# -- idempotency -------------------------------------------------------------------------


async def test_the_same_idempotency_key_and_request_return_the_same_job(client: Client) -> None:
    request = {"tool": "demo_echo", "arguments": {"text": "once"}, "idempotency_key": "k-1"}
    first = await call(client, "jobs_submit", request)
    done = await finished(client, first["job_id"])
    again = await call(client, "jobs_submit", request)
    assert again["job_id"] == first["job_id"]
    assert again["status"] == "completed"
    assert again["result"] == done["result"] == "once"
    assert again["idempotency_key"] == "k-1"
    assert (await call(client, "jobs_list", {}))["pagination"]["total"] == 1


async def test_the_same_idempotency_key_with_another_request_is_a_conflict(client: Client) -> None:
    request = {"tool": "demo_echo", "arguments": {"text": "once"}, "idempotency_key": "k-2"}
    first = await call(client, "jobs_submit", request)
    other_arguments = await call_error(client, "jobs_submit", {**request, "arguments": {"text": "twice"}})
    assert other_arguments["code"] == "IDEMPOTENCY_CONFLICT"
    assert other_arguments["job_id"] == first["job_id"]
    other_tool = await call_error(
        client, "jobs_submit", {**request, "tool": "demo_add", "arguments": {"a": 1, "b": 2}}
    )
    assert other_tool["code"] == "IDEMPOTENCY_CONFLICT"
    another_key = await call(client, "jobs_submit", {**request, "idempotency_key": "k-3"})
    assert another_key["job_id"] != first["job_id"]
    for job_id in (first["job_id"], another_key["job_id"]):
        await finished(client, job_id)


# -- sync tools and retries --------------------------------------------------------------


async def test_a_sync_tool_runs_in_a_worker_thread(client: Client) -> None:
    direct = await client.call_tool("testkit_thread_ident", {})
    assert int(text_of(direct)) != threading.get_ident()
    job = await call(client, "jobs_submit", {"tool": "testkit_thread_ident", "wait_seconds": 10})
    assert job["result"] != threading.get_ident()
    summed = await call(
        client,
        "jobs_submit",
        {"tool": "testkit_blocking_sum", "arguments": {"numbers": [1, 2, 3]}, "wait_seconds": 10},
    )
    assert summed["result"] == 6


async def test_a_failing_idempotent_job_is_retried_by_its_policy(client: Client) -> None:
    job = await call(
        client,
        "jobs_submit",
        {"tool": "testkit_flaky", "arguments": {"key": secrets.token_hex(8)}, "wait_seconds": 10},
    )
    assert job["status"] == "completed"
    assert job["attempts"] == 2
    assert job["result"] == 2
    assert "error" not in job


async def test_a_failing_job_without_retry_policy_fails_after_one_attempt(client: Client) -> None:
    job = await call(
        client, "jobs_submit", {"tool": "demo_fail", "arguments": {"message": "no"}, "wait_seconds": 10}
    )
    assert job["status"] == "failed"
    assert job["attempts"] == 1
    assert job["error"]["code"] == "EXECUTION_ERROR"
    assert job["error"]["details"]["exception"] == "DemoFailure"


# -- direct call cancellation ------------------------------------------------------------


async def test_a_client_cancelling_a_direct_call_stops_the_tool(client: Client) -> None:
    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            tg.start_soon(client.call_tool, "testkit_hold_observed", {})
            await toolkits.started.wait()
            tg.cancel_scope.cancel()
        await toolkits.interrupted.wait()
    # The connection is still usable afterwards.
    assert text_of(await client.call_tool("demo_echo", {"text": "still here"})) == "still here"


async def test_an_admin_sees_every_job_but_cancels_only_their_own(runtime: Runtime) -> None:
    from conveyor.auth import Principal

    admin = Principal("key_admin", "admin", "enterprise")
    toolkits.reset()
    victim = await runtime.engine.submit("testkit_hold", {}, owner="key_victim")
    async with Client(build_server(runtime, principal_of=lambda _ctx: admin), mode="auto") as client:
        assert (await call(client, "jobs_status", {"job_id": victim.job_id}))["job_id"] == victim.job_id
        error = await call_error(client, "jobs_cancel", {"job_id": victim.job_id})
    assert error["code"] == "FORBIDDEN"  # it can see the job: it is told it may not, not that none exists
    toolkits.release.set()


async def test_direct_calls_beyond_the_plans_concurrency_are_refused(runtime: Runtime) -> None:
    from conveyor.auth import Principal

    free = Principal("key_free", "user", "free")  # one run at a time
    toolkits.reset()
    async with Client(build_server(runtime, principal_of=lambda _ctx: free), mode="auto") as client:
        async with anyio.create_task_group() as tg:
            tg.start_soon(client.call_tool, "testkit_hold", {})
            with anyio.fail_after(5):
                await toolkits.started.wait()
            error = await call_error(client, "demo_echo", {"text": "second"})
            toolkits.release.set()
        assert error["code"] == "RATE_LIMIT_EXCEEDED"
        assert (await client.call_tool("demo_echo", {"text": "after"})).is_error is False


# -- a model that asks twice ------------------------------------------------------------------------


async def test_submitting_an_identical_job_again_while_it_runs_answers_the_same_job(
    client: Client, runtime: Runtime
) -> None:
    toolkits.reset()
    first = await call(client, "jobs_submit", {"tool": "testkit_hold", "arguments": {}})
    with anyio.fail_after(5):
        await toolkits.started.wait()
    again = await client.call_tool("jobs_submit", {"tool": "testkit_hold", "arguments": {}})
    other = await call(
        client, "jobs_submit", {"tool": "testkit_hold", "arguments": {}, "idempotency_key": "x"}
    )
    rest = await runtime.engine.submit("testkit_hold", {}, owner="local")  # REST and the engine: no dedupe
    assert again.structured_content is not None
    assert again.structured_content["job_id"] == first["job_id"]
    assert "no second one was started" in text_of(again)
    assert other["job_id"] != first["job_id"]
    assert rest.job_id != first["job_id"]
    toolkits.release.set()
    with anyio.fail_after(5):
        await runtime.engine.wait(first["job_id"], owner=None, timeout_s=5)
    after = await call(client, "jobs_submit", {"tool": "testkit_hold", "arguments": {}})
    assert after["job_id"] != first["job_id"]  # it has ended: asking again runs it again


# -- what the model reads --------------------------------------------------------------------------


async def test_summaries_say_what_happened_and_what_to_do(client: Client, runtime: Runtime) -> None:
    timed_out = await call(
        client,
        "jobs_submit",
        {"tool": "demo_sleep", "arguments": {"seconds": 5}, "timeout_ms": 10, "wait_seconds": 5},
    )
    queued = await call(
        client, "jobs_submit", {"tool": "testkit_hold", "arguments": {}, "idempotency_key": "a"}
    )
    canceled = await client.call_tool("jobs_cancel", {"job_id": queued["job_id"]})
    again = await client.call_tool("jobs_cancel", {"job_id": queued["job_id"]})
    status = await client.call_tool("jobs_status", {"job_id": timed_out["job_id"], "wait_seconds": 0})
    meta = await call_error(client, "jobs_submit", {"tool": "jobs_list", "arguments": {}})
    assert timed_out["status"] == "timeout"
    assert timed_out["error"]["suggested_fix"] == "Submit it again with a larger timeout_ms."
    assert "timed out after" in text_of(status)
    assert "Submit it again with a larger timeout_ms." in text_of(status)
    assert text_of(canceled).startswith("Job canceled successfully.")
    assert "was canceled" in text_of(canceled)
    assert text_of(again).startswith("Job already canceled; nothing to cancel.")
    assert meta["code"] == "INVALID_ARGUMENTS"
    assert meta["argument"] == "tool"
    assert "runs directly" in meta["message"] or "run directly" in meta["message"]
    toolkits.release.set()
