"""API keys, roles, job ownership, rate limits and per-plan concurrency, over real HTTP."""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import anyio
import httpx2
import pytest
from mcp.shared.exceptions import MCPError

from conveyor import limits
from conveyor.auth import PLANS
from tests import toolkits
from tests.conftest import ERAS, make_settings
from tests.http_helpers import (
    UNKNOWN_JOB,
    error_of,
    finished,
    mcp_client,
    ok,
    started_hold,
    submit,
)
from tests.live_server import LiveServer, live_server
from tests.mcp_calls import call
from tests.metrics_text import samples
from tests.serve_process import server_env

pytestmark = [pytest.mark.anyio, pytest.mark.usefixtures("fresh_toolkit_events")]

PROTECTED = [
    ("POST", "/execute_tool"),
    ("POST", "/jobs/submit"),
    ("GET", "/jobs"),
    ("GET", f"/jobs/{UNKNOWN_JOB}"),
    ("DELETE", f"/jobs/{UNKNOWN_JOB}"),
    ("GET", f"/jobs/{UNKNOWN_JOB}/stream"),
    ("GET", "/tools"),
    ("GET", "/metrics"),
    ("POST", "/mcp"),
    ("GET", "/mcp"),
    ("DELETE", "/mcp"),
]
TOOL_CALL = {"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "demo_add"}}
MCP_ACCEPT = {"Accept": "application/json, text/event-stream"}


@pytest.fixture(scope="module")
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="module")
async def server(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[LiveServer]:
    """One server for the module; every test makes its own keys, so owners and limits never mix."""
    async with live_server(make_settings(tmp_path_factory.mktemp("auth"), concurrency=1)) as server:
        yield server


@dataclass
class FrozenClock:
    """Stands in for the ``time`` module of the rate limiter, so a minute window never rolls over mid-test."""

    now: float

    def time(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> FrozenClock:
    window_start = 1_800_000_000  # a multiple of 60: a window begins here
    clock = FrozenClock(window_start + 1.5)
    monkeypatch.setattr(limits, "time", clock)
    return clock


# -- authentication -----------------------------------------------------------------------------


@pytest.mark.parametrize(("method", "path"), PROTECTED)
async def test_every_protected_endpoint_without_a_key_is_401_unauthorized(
    server: LiveServer, method: str, path: str
) -> None:
    async with server.client() as http:
        response = await http.request(method, path, json={})
    error_of(response, 401, "UNAUTHORIZED")
    assert response.headers["www-authenticate"].startswith("Bearer")
    assert "x-ratelimit-limit" not in response.headers


@pytest.mark.parametrize(
    "authorization",
    ["Bearer cvk_not-a-key", "Basic dXNlcjpwYXNz", "cvk_no-scheme", "Bearer"],
)
async def test_an_invalid_or_malformed_key_is_401_unauthorized(
    server: LiveServer, authorization: str
) -> None:
    async with server.client() as http:
        rest = await http.get("/jobs", headers={"Authorization": authorization})
        mcp = await http.post("/mcp", json=TOOL_CALL, headers={"Authorization": authorization, **MCP_ACCEPT})
    error_of(rest, 401, "UNAUTHORIZED")
    error_of(mcp, 401, "UNAUTHORIZED")


async def test_the_public_endpoints_need_no_key(server: LiveServer) -> None:
    async with server.client() as http:
        assert (await http.get("/healthz")).status_code == 200
        assert (await http.get("/openapi.json")).status_code == 200


async def test_a_user_key_on_an_admin_only_endpoint_is_403_forbidden(server: LiveServer) -> None:
    async with server.client(await server.new_key(role="user", plan="enterprise")) as http:
        executed = await http.post("/execute_tool", json={"tool": "demo_add", "arguments": {"a": 1, "b": 1}})
        metrics = await http.get("/metrics")
        allowed = await http.post("/jobs/submit", json={"tool": "demo_add", "arguments": {"a": 1, "b": 1}})
    error_of(executed, 403, "FORBIDDEN")
    error_of(metrics, 403, "FORBIDDEN")
    assert allowed.status_code == 202


async def test_an_admin_key_of_any_plan_may_execute_tools(server: LiveServer) -> None:
    async with server.client(await server.new_key(role="admin", plan="free")) as http:
        response = await http.post("/execute_tool", json={"tool": "demo_echo", "arguments": {"text": "hi"}})
    assert ok(response)["result"] == "hi"


async def test_metrics_is_public_when_the_settings_say_so(tmp_path: Path) -> None:
    async with live_server(make_settings(tmp_path, metrics_public=True)) as live, live.client() as http:
        response = await http.get("/metrics")
    assert response.status_code == 200
    assert samples(response.text)["conveyor_queue_depth"] == 0


# -- ownership ------------------------------------------------------------------------------------


async def test_another_keys_job_is_job_not_found_on_every_rest_route_and_nothing_leaks(
    server: LiveServer,
) -> None:
    owner, other = await server.new_key(), await server.new_key()
    async with server.client(owner) as mine, server.client(other) as theirs:
        job_id = await submit(mine, "demo_echo", {"text": "the owner's secret"})
        await finished(mine, job_id)
        foreign = [
            await theirs.get(f"/jobs/{job_id}"),
            await theirs.get(f"/jobs/{job_id}", params={"wait_seconds": 1}),
            await theirs.delete(f"/jobs/{job_id}"),
            await theirs.get(f"/jobs/{job_id}/stream"),
        ]
        unknown = await theirs.get(f"/jobs/{UNKNOWN_JOB}")
        listed = ok(await theirs.get("/jobs", params={"tool": "demo_echo"}))
        still_mine = ok(await mine.get(f"/jobs/{job_id}"))
    for response in foreign:
        error = error_of(response, 404, "JOB_NOT_FOUND")
        assert set(error) == set(error_of(unknown, 404, "JOB_NOT_FOUND"))
        assert "secret" not in response.text
        assert "demo_echo" not in response.text
    assert listed == {"jobs": [], "pagination": {"limit": 20, "offset": 0, "total": 0}}
    assert still_mine["status"] == "completed"
    assert still_mine["result"] == "the owner's secret"


async def test_admins_see_every_job_but_cancel_only_their_own(server: LiveServer) -> None:
    user, admin = await server.new_key(), await server.new_key(role="admin", plan="pro")
    async with server.client(user) as mine, server.client(admin) as theirs:
        job_id = await started_hold(mine)
        seen = ok(await theirs.get(f"/jobs/{job_id}"))
        listed = ok(await theirs.get("/jobs", params={"status": "running"}))
        cancel = await theirs.delete(f"/jobs/{job_id}")
        still_running = ok(await mine.get(f"/jobs/{job_id}"))
        toolkits.release.set()
        assert (await finished(mine, job_id))["status"] == "completed"
    assert seen["status"] == "running"
    assert job_id in [job["job_id"] for job in listed["jobs"]]
    error_of(cancel, 403, "FORBIDDEN")  # it can see the job, so it is told it may not, not that none exists
    assert still_running["status"] == "running"


async def test_a_revoked_key_is_401_at_once(server: LiveServer) -> None:
    key, secret = await server.runtime.keys.create(role="user", plan="pro")
    async with server.client(secret) as http:
        assert (await http.get("/jobs")).status_code == 200
        await server.runtime.keys.revoke(key.key_id)
        error_of(await http.get("/jobs"), 401, "UNAUTHORIZED")


async def test_a_key_revoked_by_another_process_is_401_on_the_next_request(server: LiveServer) -> None:
    key, secret = await server.runtime.keys.create(role="user", plan="pro")
    async with server.client(secret) as http:
        for _ in range(3):  # looked up once, then answered from the server's cache of keys
            assert (await http.get("/jobs")).status_code == 200
        revoke = [
            sys.executable,
            "-m",
            "conveyor",
            "keys",
            "revoke",
            key.key_id,
            "--db",
            server.runtime.settings.db,
        ]
        done = await anyio.run_process(revoke, env=server_env())
        assert done.returncode == 0, done.stderr
        error_of(await http.get("/jobs"), 401, "UNAUTHORIZED")


# -- rate limits ------------------------------------------------------------------------------------


def rate_headers(response: httpx2.Response) -> tuple[int, int, int]:
    headers = response.headers
    return (
        int(headers["x-ratelimit-limit"]),
        int(headers["x-ratelimit-remaining"]),
        int(headers["x-ratelimit-reset"]),
    )


async def test_every_authenticated_response_carries_the_rate_limit_headers(
    server: LiveServer, clock: FrozenClock
) -> None:
    reset = 1_800_000_060
    async with server.client(await server.new_key(plan="free")) as http:
        tools = await http.get("/tools")
        submitted = await http.post("/jobs/submit", json={"tool": "demo_add", "arguments": {"a": 1, "b": 1}})
        listed = await http.get("/jobs")
        missing = await http.get(f"/jobs/{UNKNOWN_JOB}")
        invalid = await http.post("/jobs/submit", json={"tool": "demo_add"})
        mcp = await http.post("/mcp", json={"jsonrpc": "2.0", "id": 1, "method": "ping"}, headers=MCP_ACCEPT)
        await finished(http, submitted.json()["job_id"])
    assert rate_headers(tools) == (10, 10, reset)
    assert rate_headers(submitted) == (10, 9, reset)
    assert rate_headers(listed) == (10, 9, reset)  # reads do not count
    assert rate_headers(missing) == (10, 9, reset)
    assert rate_headers(invalid) == (10, 8, reset)  # a refused execution still counts
    assert rate_headers(mcp) == (10, 8, reset)


async def test_the_eleventh_execution_in_a_minute_is_429_with_retry_after(
    server: LiveServer, clock: FrozenClock
) -> None:
    job = {"tool": "demo_echo", "arguments": {"text": "x"}}
    async with server.client(await server.new_key(plan="free")) as http:
        accepted = [await http.post("/jobs/submit", json=job) for _ in range(10)]
        refused = await http.post("/jobs/submit", json=job)
        listed = await http.get("/jobs", params={"limit": 100})
        clock.now += 60  # the next window
        next_window = await http.post("/jobs/submit", json=job)
        for response in [*accepted, next_window]:
            await finished(http, response.json()["job_id"])
    assert [r.status_code for r in accepted] == [202] * 10
    assert [rate_headers(r)[1] for r in accepted] == list(range(9, -1, -1))
    error = error_of(refused, 429, "RATE_LIMIT_EXCEEDED")
    assert error["retryable"] is True
    assert refused.headers["retry-after"] == "59"
    assert rate_headers(refused) == (10, 0, 1_800_000_060)
    assert listed.status_code == 200  # reading is never limited
    assert listed.json()["pagination"]["total"] == 10  # the refused submit made no job
    assert next_window.status_code == 202
    assert rate_headers(next_window) == (10, 9, 1_800_000_120)


async def test_execute_tool_and_submit_share_one_limit(server: LiveServer, clock: FrozenClock) -> None:
    async with server.client(await server.new_key(role="admin", plan="free")) as http:
        for n in range(5):
            ok(await http.post("/execute_tool", json={"tool": "demo_add", "arguments": {"a": n, "b": 0}}))
            await finished(http, await submit(http, "demo_add", {"a": n, "b": 0}))
        refused = await http.post("/execute_tool", json={"tool": "demo_add", "arguments": {"a": 1, "b": 1}})
    error_of(refused, 429, "RATE_LIMIT_EXCEEDED")
    assert refused.headers["retry-after"] == "59"


@pytest.mark.parametrize("era", ERAS)
async def test_mcp_tool_calls_and_rest_executions_share_one_limit(
    server: LiveServer, clock: FrozenClock, era: str
) -> None:
    key = await server.new_key(plan="free")
    async with server.client(key) as http, mcp_client(server, key, era) as client:
        tools = await client.list_tools()  # listing is not an execution
        for n in range(9):
            await finished(http, await submit(http, "demo_add", {"a": n, "b": 0}))
        assert await call(client, "demo_add", {"a": 1, "b": 2}) == {"sum": 3.0}  # the tenth
        with pytest.raises(MCPError):
            await client.call_tool("demo_add", {"a": 1, "b": 2})
        raw = await http.post("/mcp", json=TOOL_CALL, headers=MCP_ACCEPT)
        rest = await http.post("/jobs/submit", json={"tool": "demo_add", "arguments": {"a": 1, "b": 1}})
        assert len((await client.list_tools()).tools) == len(tools.tools)  # still served
    error_of(raw, 429, "RATE_LIMIT_EXCEEDED")
    assert raw.headers["retry-after"] == "59"
    assert rate_headers(raw)[1] == 0
    error_of(rest, 429, "RATE_LIMIT_EXCEEDED")


async def test_the_enterprise_limits_come_from_the_settings(tmp_path: Path, clock: FrozenClock) -> None:
    settings = make_settings(tmp_path, enterprise_requests_per_minute=2)
    async with live_server(settings) as live, live.client(live.admin_key) as http:
        answers = [
            await http.post("/execute_tool", json={"tool": "demo_echo", "arguments": {"text": "x"}})
            for _ in range(3)
        ]
    assert [r.status_code for r in answers] == [200, 200, 429]
    assert rate_headers(answers[0])[:2] == (2, 1)


# -- concurrency per plan ------------------------------------------------------------------------


async def test_a_free_keys_second_job_waits_in_the_queue_while_its_first_runs(live: LiveServer) -> None:
    free, pro = await live.new_key(plan="free"), await live.new_key(plan="pro")
    async with live.client(free) as mine, live.client(pro) as other:
        first = await started_hold(mine)
        second = await submit(mine, "demo_echo", {"text": "second"})
        # Another owner's later job runs on one of the idle workers: the free job was passed over.
        response = await other.post(
            "/jobs/submit", json={"tool": "demo_echo", "arguments": {"text": "x"}, "wait_seconds": 10}
        )
        assert ok(response)["status"] == "completed"
        waiting = ok(await mine.get(f"/jobs/{second}"))
        toolkits.release.set()
        assert (await finished(mine, first))["status"] == "completed"
        done = await finished(mine, second)
    assert waiting["status"] == "queued"
    assert done["status"] == "completed"
    assert done["started_at"] >= waiting["created_at"]


async def test_jobs_over_the_concurrency_limit_are_accepted_not_refused(live: LiveServer) -> None:
    async with live.client(await live.new_key(plan="free")) as http:
        await started_hold(http)
        queued = [await submit(http, "demo_echo", {"text": str(n)}) for n in range(3)]
        statuses = [ok(await http.get(f"/jobs/{job_id}"))["status"] for job_id in queued]
        toolkits.release.set()
        results = [(await finished(http, job_id))["result"] for job_id in queued]
    assert statuses == ["queued"] * 3
    assert results == ["0", "1", "2"]


async def test_each_plan_has_its_own_rate_limit(server: LiveServer) -> None:
    limits_seen = {}
    for plan in PLANS:
        async with server.client(await server.new_key(plan=plan)) as http:
            limits_seen[plan] = rate_headers(await http.get("/tools"))[0]
    assert limits_seen == {"free": 10, "pro": 100, "enterprise": 1000}
