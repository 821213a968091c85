"""Tool versions: a toolkit publishes a tool in several versions; the newest (by version order, not
text order) is the default and what tools/list shows; a call names another in ``_meta``
(``conveyor/version``), a job in ``version`` (jobs_submit, REST); the job stores and shows the
version it runs, and only a worker that has a named version runs its job."""

from __future__ import annotations

import os
import signal
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from mcp import Client

from conveyor import Toolkit
from conveyor.errors import ConfigError, ErrorCode, IdempotencyConflict, InvalidArguments
from conveyor.jobs.models import JobStatus
from conveyor.mcp_server import build_server
from conveyor.registry import Registry
from conveyor.runtime import Runtime, open_runtime
from conveyor.settings import Settings
from tests.conftest import ERAS, make_settings
from tests.http_helpers import error_of, ok
from tests.live_server import live_server
from tests.mcp_calls import call, call_error
from tests.raw_mcp import LEGACY, raw_client
from tests.serve_process import conveyor_worker, env_with_testkit
from tests.versioned_toolkits import NEW, OLD, newest_only, toolkit

pytestmark = pytest.mark.anyio

TOOL = "verkit_greet"
VERSION_META = "conveyor/version"


def versioned_settings(tmp_path: Path, kit: str = "toolkit", **overrides: Any) -> Settings:
    return make_settings(tmp_path, toolkits=(f"tests.versioned_toolkits:{kit}",), **overrides)


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return versioned_settings(tmp_path)


@pytest.fixture(params=ERAS)
async def client(request: pytest.FixtureRequest, runtime: Runtime) -> AsyncIterator[Client]:
    async with Client(build_server(runtime), mode=request.param) as client:
        yield client


def greeting(result: Any) -> dict[str, Any]:
    """What greet answered, from a job's result or a call's text."""
    import json

    if isinstance(result, dict):
        return result
    assert not result.is_error, result.content
    answer: dict[str, Any] = json.loads(result.content[0].text)
    return answer


# -- the registry ----------------------------------------------------------------------------------


def test_every_version_is_kept_and_the_newest_by_version_order_is_the_default() -> None:
    registry = Registry([("tests", toolkit)])
    assert registry.get(TOOL).version == NEW  # 1.10.0 > 1.9.0, though not as text
    assert registry.get(TOOL).versions == (NEW, OLD)
    assert registry.get(TOOL, OLD).version == OLD
    assert registry.get("verkit_other").versions == ("0.1.0",)
    assert [tool.wire_name for tool in registry] == [TOOL, "verkit_other"]  # one entry per tool


def test_the_default_does_not_depend_on_the_order_of_registration() -> None:
    kit = Toolkit("order")
    for number in ("2.0.0", "10.0.0", "9.1"):

        @kit.tool(name="step", version=number)
        def step() -> str:
            return "ok"

    assert kit.tools["step"].version == "10.0.0"
    assert kit.tools["step"].versions == ("10.0.0", "9.1", "2.0.0")


def test_a_version_defined_twice_or_versions_that_cannot_be_compared_are_refused() -> None:
    kit = Toolkit("twice", version="1.0.0")

    @kit.tool(name="same")
    def first() -> None:
        pass

    with pytest.raises(ConfigError):
        kit.tool(name="same", version="1.0.0")(first)
    with pytest.raises(ConfigError):
        kit.tool(name="same", version="latest-and-greatest")(first)
    assert kit.tools["same"].versions == ("1.0.0",)


def test_an_unknown_version_is_invalid_arguments_naming_the_versions() -> None:
    registry = Registry([("tests", toolkit)])
    with pytest.raises(InvalidArguments) as raised:
        registry.get(TOOL, "3.0.0")
    error = raised.value.to_payload()
    assert error["code"] == ErrorCode.INVALID_ARGUMENTS
    assert error["argument"] == "version"
    assert error["details"]["versions"] == [NEW, OLD]
    assert registry.get(TOOL, "3.0.0", newest_if_missing=True).version == NEW


# -- what clients see -----------------------------------------------------------------------------


async def test_tools_list_shows_the_newest_version_and_names_the_others(client: Client) -> None:
    tools = {tool.name: tool for tool in (await client.list_tools()).tools}
    greet = tools[TOOL]
    assert "punctuation" in greet.input_schema["properties"]  # the newest's schema
    assert greet.meta is not None
    assert greet.meta[VERSION_META] == NEW
    assert greet.meta["conveyor/versions"] == [NEW, OLD]
    assert tools["verkit_other"].meta is not None
    assert "conveyor/versions" not in tools["verkit_other"].meta  # one version: nothing to choose
    found = await call(client, "tools_search", {"query": "greet someone"})
    assert found["tools"][0]["name"] == TOOL
    assert found["tools"][0]["versions"] == [NEW, OLD]


async def test_a_direct_call_runs_the_version_its_meta_names(client: Client) -> None:
    newest = greeting(await client.call_tool(TOOL, {"name": "Ada"}))
    old = greeting(await client.call_tool(TOOL, {"name": "Ada"}, meta={VERSION_META: OLD}))
    assert (newest["version"], newest["greeting"]) == (NEW, "Hi, Ada!")
    assert (old["version"], old["greeting"]) == (OLD, "Hello, Ada.")
    # Each version checks its own arguments: the old one has no punctuation.
    refused = await client.call_tool(TOOL, {"name": "Ada", "punctuation": "?"}, meta={VERSION_META: OLD})
    assert refused.is_error
    assert refused.structured_content is not None
    assert refused.structured_content["error"]["argument"] == "punctuation"
    for wrong in ("3.0.0", 3):
        unknown = await client.call_tool(TOOL, {"name": "Ada"}, meta={VERSION_META: wrong})
        assert unknown.is_error
        assert unknown.structured_content is not None
        error = unknown.structured_content["error"]
        assert (error["code"], error["argument"]) == (ErrorCode.INVALID_ARGUMENTS, "version")


async def test_jobs_submit_runs_the_named_version_and_every_view_shows_it(client: Client) -> None:
    old = await call(
        client,
        "jobs_submit",
        {"tool": TOOL, "arguments": {"name": "Ada"}, "version": OLD, "wait_seconds": 10},
    )
    newest = await call(
        client, "jobs_submit", {"tool": TOOL, "arguments": {"name": "Bob"}, "wait_seconds": 10}
    )
    assert (old["status"], old["version"], old["result"]["version"]) == ("completed", OLD, OLD)
    assert (newest["status"], newest["version"], newest["result"]["version"]) == ("completed", NEW, NEW)
    status = await call(client, "jobs_status", {"job_id": old["job_id"]})
    listed = await call(client, "jobs_list", {"tool": TOOL})
    resource = await client.read_resource(f"conveyor://jobs/{old['job_id']}")
    assert status["version"] == OLD
    assert {job["job_id"]: job["version"] for job in listed["jobs"]} == {
        old["job_id"]: OLD,
        newest["job_id"]: NEW,
    }
    assert f'"version":"{OLD}"' in resource.contents[0].text.replace(" ", "")  # type: ignore[union-attr]
    unknown = await call_error(
        client, "jobs_submit", {"tool": TOOL, "arguments": {"name": "Ada"}, "version": "0.0.1"}
    )
    assert (unknown["code"], unknown["argument"]) == (ErrorCode.INVALID_ARGUMENTS, "version")


async def test_an_idempotency_key_names_one_version(runtime: Runtime) -> None:
    first = await runtime.engine.submit(
        TOOL, {"name": "Ada"}, owner="alice", idempotency_key="k", version=OLD
    )
    again = await runtime.engine.submit(
        TOOL, {"name": "Ada"}, owner="alice", idempotency_key="k", version=OLD
    )
    assert again.job_id == first.job_id
    with pytest.raises(IdempotencyConflict):
        await runtime.engine.submit(TOOL, {"name": "Ada"}, owner="alice", idempotency_key="k", version=NEW)


async def test_a_2025_task_runs_the_version_its_meta_names(runtime: Runtime) -> None:
    async with raw_client(build_server(runtime), era=LEGACY) as client:
        params = {"name": TOOL, "arguments": {"name": "Ada"}, "task": {"ttl": 60_000}}
        created = await client.request("tools/call", {**params, "_meta": {VERSION_META: OLD}})
        result = await client.request("tasks/result", {"taskId": created["task"]["taskId"]})
    assert greeting_text(result)["version"] == OLD
    job = await runtime.engine.get(created["task"]["taskId"], owner=None)
    assert job.tool_version == OLD


def greeting_text(result: dict[str, Any]) -> dict[str, Any]:
    import json

    answer: dict[str, Any] = json.loads(result["content"][0]["text"])
    return answer


async def test_rest_submit_and_execute_tool_take_a_version_and_show_it(tmp_path: Path) -> None:
    async with live_server(versioned_settings(tmp_path)) as server, server.client(server.admin_key) as http:
        body = {"tool": TOOL, "arguments": {"name": "Ada"}}
        submitted = ok(
            await http.post("/jobs/submit", json={**body, "version": OLD, "wait_seconds": 10}), 200
        )
        shown = ok(await http.get(f"/jobs/{submitted['job_id']}"))
        direct = ok(await http.post("/execute_tool", json={**body, "version": OLD}))
        newest = ok(await http.post("/execute_tool", json=body))
        queued = ok(await http.post("/execute_tool", json={**body, "version": OLD, "mode": "async"}), 202)
        later = ok(await http.get(f"/jobs/{queued['job_id']}", params={"wait_seconds": 10}))
        listed = ok(await http.get("/tools"))["tools"]
        unknown = error_of(
            await http.post("/jobs/submit", json={**body, "version": "9.9.9"}), 400, "INVALID_ARGUMENTS"
        )
        unknown_direct = error_of(
            await http.post("/execute_tool", json={**body, "version": "9.9.9"}), 400, "INVALID_ARGUMENTS"
        )
    assert (submitted["version"], shown["version"], shown["result"]["version"]) == (OLD, OLD, OLD)
    assert (direct["version"], direct["result"]["version"]) == (OLD, OLD)
    assert (newest["version"], newest["result"]["version"]) == (NEW, NEW)
    assert (queued["version"], later["version"], later["result"]["version"]) == (OLD, OLD, OLD)
    greet = next(tool for tool in listed if tool["name"] == TOOL)
    assert (greet["version"], greet["versions"]) == (NEW, [NEW, OLD])
    assert unknown["argument"] == unknown_direct["argument"] == "version"
    assert unknown["details"]["versions"] == [NEW, OLD]


# -- workers ------------------------------------------------------------------------------------


@pytest.mark.slow
async def test_only_a_worker_that_has_the_named_version_runs_its_job_and_runs_that_version(
    tmp_path: Path, database: str
) -> None:
    settings = versioned_settings(tmp_path, db=database)
    async with open_runtime(settings, run_workers=False) as front:
        pinned = await front.engine.submit(TOOL, {"name": "Ada"}, owner="alice", version=OLD)
        unpinned = await front.engine.submit(TOOL, {"name": "Bob"}, owner="alice")
        # A worker that has only the newest version runs the job that named none, and leaves the
        # older job that named the old version, which it would have claimed first if it could.
        async with open_runtime(versioned_settings(tmp_path, "newest_only", db=database)) as upgraded:
            done = await upgraded.engine.wait(unpinned.job_id, owner="alice", timeout_s=15)
            waiting = await upgraded.engine.get(pinned.job_id, owner=None)
        assert done.status is JobStatus.COMPLETED, done.error
        assert waiting.status is JobStatus.QUEUED
        # A worker process that has both runs it, in the old version.
        env = env_with_testkit(toolkits="tests.versioned_toolkits:toolkit")
        async with conveyor_worker(tmp_path, signal.SIGTERM, env=env, db=database) as worker:
            ran = await front.engine.wait(pinned.job_id, owner="alice", timeout_s=15)
    assert ran.status is JobStatus.COMPLETED, ran.error
    assert ran.tool_version == OLD
    assert ran.result["version"] == OLD
    assert worker.process is not None
    assert ran.result["pid"] == worker.process.pid != os.getpid()


async def test_a_job_that_named_no_version_runs_the_newest_a_worker_has_and_says_so(
    tmp_path: Path, database: str
) -> None:
    """Submitted when 1.9.0 was the newest, then run by a worker upgraded past it."""
    before_upgrade = versioned_settings(tmp_path, "oldest_only", db=database)
    async with open_runtime(before_upgrade, run_workers=False) as before:
        job = await before.engine.submit(TOOL, {"name": "Ada"}, owner="alice")
    assert job.tool_version == OLD
    async with open_runtime(versioned_settings(tmp_path, "newest_only", db=database)) as after:
        done = await after.engine.wait(job.job_id, owner="alice", timeout_s=15)
    assert done.status is JobStatus.COMPLETED, done.error
    assert done.result["version"] == NEW
    assert done.tool_version == NEW  # the version that ran
    assert newest_only.tools["greet"].versions == (NEW,)
