"""MCP over streamable HTTP at /mcp, in both protocol eras, against a real uvicorn."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import anyio
import pytest
from mcp.shared.exceptions import MCPError

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
from tests.mcp_calls import call, call_error

pytestmark = [pytest.mark.anyio, pytest.mark.usefixtures("fresh_toolkit_events")]

META_TOOLS = {"jobs_submit", "jobs_status", "jobs_cancel", "jobs_list", "tools_search"}
MCP_HEADERS = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}
INITIALIZE = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "initialize",
    "params": {
        "protocolVersion": "2025-11-25",
        "capabilities": {},
        "clientInfo": {"name": "raw", "version": "0"},
    },
}


@pytest.fixture(scope="module")
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="module")
async def server(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[LiveServer]:
    """One server for the module; every test makes its own keys, so owners never mix."""
    async with live_server(make_settings(tmp_path_factory.mktemp("mcp"))) as server:
        yield server


@pytest.fixture(params=ERAS)
def era(request: pytest.FixtureRequest) -> str:
    return str(request.param)


# -- the same server as stdio ---------------------------------------------------------------------


async def test_mcp_over_http_speaks_the_clients_era_and_lists_every_tool_and_meta_tool(
    server: LiveServer, era: str
) -> None:
    async with mcp_client(server, await server.new_key(), era) as client:
        names = {tool.name for tool in (await client.list_tools()).tools}
        version = client.session.protocol_version
    assert names == {tool.wire_name for tool in server.runtime.registry} | META_TOOLS
    assert version is not None
    assert (version < "2026") == (era == "legacy")


async def test_a_direct_call_over_http_sends_progress_and_answers_structured_output(
    server: LiveServer, era: str
) -> None:
    seen: list[tuple[float, float | None, str | None]] = []

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        seen.append((progress, total, message))

    async with mcp_client(server, await server.new_key(), era) as client:
        result = await client.call_tool(
            "demo_sleep", {"seconds": 0.03, "steps": 3}, progress_callback=on_progress
        )
    assert not result.is_error
    assert result.structured_content == {"slept_seconds": 0.03, "steps": 3}
    assert seen == [(1, 3, "step 1 of 3"), (2, 3, "step 2 of 3"), (3, 3, "step 3 of 3")]


async def test_a_direct_call_that_fails_answers_an_error_result_with_its_code(
    server: LiveServer, era: str
) -> None:
    async with mcp_client(server, await server.new_key(), era) as client:
        failed = await call_error(client, "demo_fail", {"message": "boom"})
        invalid = await call_error(client, "demo_add", {"a": 1})
    assert failed["code"] == "EXECUTION_ERROR"
    assert failed["request_id"]
    assert invalid["code"] == "INVALID_ARGUMENTS"
    assert invalid["argument"] == "b"


async def test_the_meta_tools_submit_wait_list_and_cancel_over_http(server: LiveServer, era: str) -> None:
    async with mcp_client(server, await server.new_key(), era) as client:
        done = await call(
            client, "jobs_submit", {"tool": "demo_add", "arguments": {"a": 1, "b": 2}, "wait_seconds": 10}
        )
        status = await call(client, "jobs_status", {"job_id": done["job_id"]})
        held = await call(client, "jobs_submit", {"tool": "testkit_hold"})
        with anyio.fail_after(5):
            await toolkits.started.wait()
        canceled = await call(client, "jobs_cancel", {"job_id": held["job_id"]})
        listed = await call(client, "jobs_list", {})
        unknown = await call_error(client, "jobs_status", {"job_id": UNKNOWN_JOB})
    assert done["status"] == "completed"
    assert done["result"] == {"sum": 3.0}
    assert status == done
    assert canceled["status"] == "canceled"
    assert [job["job_id"] for job in listed["jobs"]] == [held["job_id"], done["job_id"]]
    assert listed["pagination"] == {"limit": 20, "offset": 0, "total": 2}
    assert unknown["code"] == "JOB_NOT_FOUND"


# -- one job store behind both doors ------------------------------------------------------------------


async def test_a_job_submitted_over_rest_is_read_and_listed_through_mcp(server: LiveServer, era: str) -> None:
    key = await server.new_key()
    async with server.client(key) as http, mcp_client(server, key, era) as client:
        job_id = await submit(http, "demo_add", {"a": 20, "b": 22})
        job = await call(client, "jobs_status", {"job_id": job_id, "wait_seconds": 10})
        listed = await call(client, "jobs_list", {"tool": "demo_add"})
        over_rest = await finished(http, job_id)
    assert job["status"] == "completed"
    assert job["result"] == {"sum": 42.0}
    assert job == over_rest
    assert [entry["job_id"] for entry in listed["jobs"]] == [job_id]


async def test_a_job_submitted_over_mcp_is_read_and_canceled_through_rest(
    server: LiveServer, era: str
) -> None:
    key = await server.new_key()
    async with server.client(key) as http, mcp_client(server, key, era) as client:
        job_id = (await call(client, "jobs_submit", {"tool": "testkit_hold"}))["job_id"]
        with anyio.fail_after(5):
            await toolkits.started.wait()
        running = ok(await http.get(f"/jobs/{job_id}"))
        canceled = ok(await http.delete(f"/jobs/{job_id}"))
        seen_over_mcp = await call(client, "jobs_status", {"job_id": job_id})
    assert running["status"] == "running"
    assert canceled["status"] == "canceled"
    assert seen_over_mcp["status"] == "canceled"


async def test_another_keys_job_is_job_not_found_through_every_meta_tool(
    server: LiveServer, era: str
) -> None:
    owner, other = await server.new_key(), await server.new_key()
    async with server.client(owner) as http, mcp_client(server, other, era) as client:
        theirs = await started_hold(http)
        status = await call_error(client, "jobs_status", {"job_id": theirs})
        waited = await call_error(client, "jobs_status", {"job_id": theirs, "wait_seconds": 1})
        cancel = await call_error(client, "jobs_cancel", {"job_id": theirs})
        listed = await call(client, "jobs_list", {})
        mine = (await call(client, "jobs_submit", {"tool": "demo_echo", "arguments": {"text": "x"}}))[
            "job_id"
        ]
        owner_reads_mine = await http.get(f"/jobs/{mine}")
        still_running = ok(await http.get(f"/jobs/{theirs}"))
    for error in (status, waited, cancel):
        assert error["code"] == "JOB_NOT_FOUND"
        assert "testkit_hold" not in str(error)
    assert listed["pagination"]["total"] == 0
    error_of(owner_reads_mine, 404, "JOB_NOT_FOUND")
    assert still_running["status"] == "running"


async def test_a_session_is_bound_to_the_key_that_opened_it(server: LiveServer) -> None:
    owner, other = await server.new_key(), await server.new_key()
    async with server.client(owner) as mine, server.client(other) as theirs:
        opened = await mine.post("/mcp", json=INITIALIZE, headers=MCP_HEADERS)
        session = {"Mcp-Session-Id": opened.headers["mcp-session-id"], **MCP_HEADERS}
        ping = {"jsonrpc": "2.0", "id": 2, "method": "ping"}
        hijack = await theirs.post("/mcp", json=ping, headers=session)
    assert opened.status_code == 200
    assert hijack.status_code == 404


async def test_a_session_this_server_does_not_know_is_404_so_the_client_initializes_again(
    server: LiveServer,
) -> None:
    # Behind a load balancer without sticky routing, or after a restart: another process's session.
    async with server.client(server.admin_key) as http:
        unknown = {"Mcp-Session-Id": "a0b1c2d3e4f5a6b7c8d9e0f1a2b3c4d5", **MCP_HEADERS}
        ping = {"jsonrpc": "2.0", "id": 2, "method": "ping"}
        answer = await http.post("/mcp", json=ping, headers=unknown)
        again = await http.post("/mcp", json=INITIALIZE, headers=MCP_HEADERS)
    assert answer.status_code == 404
    assert answer.json()["error"]["code"] < 0  # a JSON-RPC error, as the transport answers one
    assert again.status_code == 200
    assert again.headers["mcp-session-id"]


# -- authentication and transport protection ----------------------------------------------------------


async def test_mcp_without_a_valid_key_is_401_and_the_sdk_client_cannot_connect(
    server: LiveServer, era: str
) -> None:
    async with server.client() as http:
        error_of(await http.post("/mcp", json=INITIALIZE, headers=MCP_HEADERS), 401, "UNAUTHORIZED")
    with pytest.raises(ExceptionGroup) as refused:
        async with mcp_client(server, "cvk_not-a-key", era) as client:
            await client.list_tools()
    assert refused.group_contains(MCPError)


async def test_a_request_with_a_foreign_host_is_refused_as_dns_rebinding(server: LiveServer) -> None:
    async with server.client(await server.new_key()) as http:
        foreign = await http.post("/mcp", json=INITIALIZE, headers={"Host": "evil.example", **MCP_HEADERS})
        spoofed_port = await http.post(
            "/mcp", json=INITIALIZE, headers={"Host": "evil.example:8765", **MCP_HEADERS}
        )
        origin = await http.post(
            "/mcp", json=INITIALIZE, headers={"Origin": "http://evil.example", **MCP_HEADERS}
        )
        local_origin = await http.post(
            "/mcp", json=INITIALIZE, headers={"Origin": "http://localhost:3000", **MCP_HEADERS}
        )
    error_of(foreign, 421, "MISDIRECTED_REQUEST")
    error_of(spoofed_port, 421, "MISDIRECTED_REQUEST")
    error_of(origin, 403, "FORBIDDEN")
    assert local_origin.status_code == 200


async def test_the_settings_allow_real_host_names(tmp_path: Path, era: str) -> None:
    settings = make_settings(
        tmp_path, allowed_hosts=("mcp.example.com",), allowed_origins=("https://app.example.com",)
    )
    async with live_server(settings) as live:
        named = {"Host": "mcp.example.com", "Origin": "https://app.example.com"}
        async with mcp_client(live, live.admin_key, era, **named) as client:
            assert await call(client, "demo_add", {"a": 1, "b": 1}) == {"sum": 2.0}
        async with live.client(live.admin_key) as http:
            other = await http.post(
                "/mcp", json=INITIALIZE, headers={"Host": "api.example.com", **MCP_HEADERS}
            )
    error_of(other, 421, "MISDIRECTED_REQUEST")


async def test_an_oversized_mcp_body_is_413_payload_too_large(server: LiveServer) -> None:
    limit = server.runtime.settings.max_request_bytes
    body = b'{"jsonrpc": "2.0", "id": 1, "method": "ping", "params": {"pad": "' + b"x" * limit + b'"}}'
    async with server.client(await server.new_key()) as http:
        response = await http.post("/mcp", content=body, headers=MCP_HEADERS)
    assert error_of(response, 413, "PAYLOAD_TOO_LARGE")["limit_bytes"] == limit


async def test_a_post_to_mcp_that_is_not_json_is_400_invalid_arguments(server: LiveServer) -> None:
    async with server.client(await server.new_key()) as http:
        response = await http.post(
            "/mcp", content=b"ping", headers={**MCP_HEADERS, "Content-Type": "text/plain"}
        )
    assert error_of(response, 400, "INVALID_ARGUMENTS")["argument"] == "Content-Type"


async def test_malformed_json_on_mcp_is_a_client_error_not_a_500(server: LiveServer) -> None:
    async with server.client(await server.new_key()) as http:
        response = await http.post("/mcp", content=b'{"jsonrpc": "2.0", "id": ', headers=MCP_HEADERS)
    assert response.status_code == 400
    assert response.json()["error"]["code"] < 0  # a JSON-RPC error: this is a protocol fault
