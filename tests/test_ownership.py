"""A key never sees, waits on, cancels or hears of another key's job: every door, both eras.

The matrix: REST and MCP over HTTP (real keys, a real uvicorn), and the MCP server that stdio
serves, in memory with two principals (over real stdio there is one user, the machine's). Each
operation is tried by a second key on the first key's job, and by the owner as a control, so a
refusal is a refusal and not a broken operation.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp import Client
from mcp.shared.exceptions import MCPDeprecationWarning, MCPError

from conveyor.auth import Principal
from conveyor.jobs.models import Job, JobStatus
from conveyor.mcp_server import build_server
from conveyor.mcp_server.resources import job_uri
from conveyor.runtime import Runtime
from tests import toolkits
from tests.conftest import ERAS, make_settings
from tests.http_helpers import error_of, mcp_client, ok
from tests.live_server import LiveServer, live_server
from tests.raw_mcp import LEGACY, RawError, raw_client

pytestmark = pytest.mark.anyio


@pytest.fixture(autouse=True)
def held_tools() -> Iterator[None]:
    toolkits.reset()
    yield
    toolkits.release.set()


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[LiveServer]:
    async with live_server(make_settings(tmp_path)) as server:
        yield server


async def owners_running_job(runtime: Runtime, owner: str, kind: str = "job") -> Job:
    job = await runtime.engine.submit("testkit_hold", {}, owner=owner, kind=kind)  # type: ignore[arg-type]
    with anyio.fail_after(5):
        await toolkits.started.wait()
    toolkits.started = anyio.Event()  # the next held job sets a fresh one
    return job


# -- REST ------------------------------------------------------------------------------------


async def test_over_rest_another_key_cannot_see_wait_on_stream_or_cancel_a_job(server: LiveServer) -> None:
    alice, bob = await server.new_key(), await server.new_key()
    async with server.client(alice) as as_alice, server.client(bob) as as_bob:
        job_id = ok(await as_alice.post("/jobs/submit", json={"tool": "testkit_hold", "arguments": {}}), 202)[
            "job_id"
        ]
        for response in (
            await as_bob.get(f"/jobs/{job_id}"),
            await as_bob.get(f"/jobs/{job_id}", params={"wait_seconds": 1}),
            await as_bob.get(f"/jobs/{job_id}/stream"),
            await as_bob.delete(f"/jobs/{job_id}"),
        ):
            error_of(response, 404, "JOB_NOT_FOUND")
        assert ok(await as_bob.get("/jobs"))["pagination"]["total"] == 0
        assert ok(await as_alice.get(f"/jobs/{job_id}"))["status"] in ("queued", "running")
        assert ok(await as_alice.get("/jobs"))["pagination"]["total"] == 1


# -- MCP over HTTP and in memory: the same operations --------------------------------------------


async def refused_and_allowed(client: Client, job: Job, era: str) -> tuple[list[str], list[str]]:
    """Each job operation through this client: the names of those refused, and of those allowed."""
    refused, allowed = [], []

    async def attempt(name: str, operation: Any) -> None:
        try:
            outcome = await operation
        except MCPError:
            refused.append(name)
            return
        if getattr(outcome, "is_error", False):
            refused.append(name)
        else:
            allowed.append(name)

    await attempt("jobs_status", client.call_tool("jobs_status", {"job_id": job.job_id}))
    await attempt(
        "jobs_status wait", client.call_tool("jobs_status", {"job_id": job.job_id, "wait_seconds": 0.2})
    )
    await attempt("resources/read", client.read_resource(job_uri(job.job_id)))
    listed = await client.call_tool("jobs_list", {})
    (allowed if job.job_id in str(listed.structured_content) else refused).append("jobs_list")
    resources = await client.list_resources()
    (allowed if job_uri(job.job_id) in [str(r.uri) for r in resources.resources] else refused).append(
        "resources/list"
    )
    if era == "legacy":
        with pytest.warns(MCPDeprecationWarning):
            await attempt("resources/subscribe", client.subscribe_resource(job_uri(job.job_id)))
    else:

        async def listen() -> None:
            async with client.listen(resource_subscriptions=[job_uri(job.job_id)]):
                pass

        await attempt("subscriptions/listen", listen())
    return refused, allowed


OPERATIONS = {"jobs_status", "jobs_status wait", "resources/read", "jobs_list", "resources/list"}


@pytest.mark.parametrize("era", ERAS)
async def test_over_mcp_http_another_key_is_refused_every_operation_on_a_job_and_hears_nothing(
    server: LiveServer, era: str
) -> None:
    alice, bob = await server.new_key(), await server.new_key()
    alice_id = (await server.runtime.keys.authenticate(alice)).id
    job = await owners_running_job(server.runtime, alice_id)
    heard: list[Any] = []

    async def hear(message: Any) -> None:
        heard.append(message)

    async with (
        mcp_client(server, bob, era, message_handler=hear) as as_bob,
        mcp_client(server, alice, era) as as_alice,
    ):
        refused, allowed = await refused_and_allowed(as_bob, job, era)
        cancel = await as_bob.call_tool("jobs_cancel", {"job_id": job.job_id})
        _, owner_allowed = await refused_and_allowed(as_alice, job, era)
        toolkits.release.set()
        with anyio.fail_after(5):
            await server.runtime.engine.wait(job.job_id, owner=None, timeout_s=5)
    subscription = "resources/subscribe" if era == "legacy" else "subscriptions/listen"
    assert set(refused) == {*OPERATIONS, subscription}
    assert allowed == []
    assert cancel.is_error
    assert cancel.structured_content is not None
    assert cancel.structured_content["error"]["code"] == "JOB_NOT_FOUND"
    assert set(owner_allowed) == {*OPERATIONS, subscription}
    assert job.job_id not in str(heard)  # no notification of it reached bob's connection


@pytest.mark.parametrize("era", ERAS)
async def test_the_stdio_server_in_memory_refuses_another_principal_every_operation_on_a_job(
    runtime: Runtime, era: str
) -> None:
    alice, bob = Principal("key_alice", "user", "pro"), Principal("key_bob", "user", "pro")
    job = await owners_running_job(runtime, alice.id)
    notes: list[Any] = []

    async def hear(message: Any) -> None:
        notes.append(message)

    async with Client(
        build_server(runtime, principal_of=lambda _ctx: bob), mode=era, message_handler=hear
    ) as client:
        refused, allowed = await refused_and_allowed(client, job, era)
        toolkits.release.set()
        with anyio.fail_after(5):
            await runtime.engine.wait(job.job_id, owner=None, timeout_s=5)
    assert allowed == []
    assert set(refused) >= OPERATIONS
    assert job.job_id not in str(notes)


async def test_tasks_of_another_principal_are_not_found_through_every_tasks_method(runtime: Runtime) -> None:
    alice, bob = Principal("key_alice", "user", "pro"), Principal("key_bob", "user", "pro")
    task = await owners_running_job(runtime, alice.id, kind="task")
    for principal, expect_found in ((bob, False), (alice, True)):
        async with raw_client(
            build_server(runtime, principal_of=lambda _ctx, p=principal: p), era=LEGACY
        ) as raw:
            outcomes = []
            methods = (
                ("tasks/get", "tasks/result", "tasks/cancel")
                if principal is bob
                else ("tasks/get", "tasks/cancel")
            )
            for method in methods:
                try:
                    await raw.request(method, {"taskId": task.job_id})
                    outcomes.append(True)
                except RawError:
                    outcomes.append(False)
            listed = await raw.request("tasks/list")
        assert outcomes == [expect_found] * len(outcomes), principal
        assert (task.job_id in str(listed)) is expect_found
    done = await runtime.engine.get(task.job_id, owner=None)
    assert done.status is JobStatus.CANCELED  # by its owner, the control; never by bob
