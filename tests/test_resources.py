"""Jobs as MCP resources, in both eras: template, list, read, and change subscriptions."""

from __future__ import annotations

import json
from typing import Any

import anyio
import pytest
from mcp import Client
from mcp.shared.exceptions import MCPDeprecationWarning, MCPError
from mcp.shared.subscriptions import ResourceUpdated
from mcp_types import INVALID_PARAMS

from conveyor.mcp_server import build_server
from conveyor.runtime import Runtime
from conveyor.schemas import JobView
from tests import toolkits

pytestmark = pytest.mark.anyio


def uri(job_id: str) -> str:
    return f"conveyor://jobs/{job_id}"


async def test_the_job_template_and_recent_jobs_are_listed(client: Client, runtime: Runtime) -> None:
    templates = await client.list_resource_templates()
    assert [t.uri_template for t in templates.resource_templates] == ["conveyor://jobs/{job_id}"]
    job = await runtime.engine.submit("demo_echo", {"text": "x"}, owner="local")
    listed = await client.list_resources()
    assert uri(job.job_id) in [str(resource.uri) for resource in listed.resources]


async def test_reading_a_job_resource_answers_the_job_as_json(client: Client, runtime: Runtime) -> None:
    job = await runtime.engine.submit("demo_add", {"a": 1, "b": 2}, owner="local")
    finished = await runtime.engine.wait(job.job_id, owner=None, timeout_s=10)
    read = await client.read_resource(uri(job.job_id))
    content = read.contents[0]
    assert content.mime_type == "application/json"
    assert json.loads(content.text) == JobView.of(finished)  # type: ignore[union-attr]


async def test_an_unknown_or_foreign_job_resource_is_not_found(client: Client, runtime: Runtime) -> None:
    other = await runtime.engine.submit("demo_echo", {"text": "x"}, owner="key_other")
    async with Client(build_server(runtime, principal_of=lambda _ctx: _user()), mode="legacy") as user_client:
        for missing in (uri("job_unknown"), uri(other.job_id)[:-1] + "0", "conveyor://nothing"):
            with pytest.raises(MCPError) as refused:
                await user_client.read_resource(missing)
            assert refused.value.error.code in (-32002, INVALID_PARAMS)
    assert other.owner == "key_other"


def _user() -> Any:
    from conveyor.auth import Principal

    return Principal("key_me", "user", "pro")


async def test_2025_subscribers_hear_every_change_of_a_job(runtime: Runtime) -> None:
    toolkits.reset()
    updates: list[str] = []
    finished = anyio.Event()

    async def on_message(message: Any) -> None:
        params = getattr(getattr(message, "params", None), "uri", None)
        if params is not None:
            updates.append(str(params))
            job = await runtime.engine.get(str(params).rsplit("/", 1)[1], owner=None)
            if job.status.terminal:
                finished.set()

    async with Client(build_server(runtime), mode="legacy", message_handler=on_message) as client:
        job = await runtime.engine.submit("testkit_hold", {}, owner="local")
        with anyio.fail_after(10):
            await toolkits.started.wait()
            with pytest.warns(MCPDeprecationWarning):  # deprecated in 2026, yet the 2025 way
                await client.subscribe_resource(uri(job.job_id))
            toolkits.release.set()
            await finished.wait()
    assert updates
    assert set(updates) == {uri(job.job_id)}


async def test_2026_listen_streams_carry_resource_updates(runtime: Runtime) -> None:
    toolkits.reset()
    async with Client(build_server(runtime), mode="auto") as client:
        job = await runtime.engine.submit("testkit_hold", {}, owner="local")
        seen: list[str] = []
        async with client.listen(resource_subscriptions=[uri(job.job_id)]) as subscription:
            with anyio.fail_after(10):
                await toolkits.started.wait()
                toolkits.release.set()
                async for event in subscription:
                    assert isinstance(event, ResourceUpdated)
                    seen.append(event.uri)
                    current = await runtime.engine.get(job.job_id, owner=None)
                    if current.status.terminal:
                        break
    assert seen
    assert set(seen) == {uri(job.job_id)}
