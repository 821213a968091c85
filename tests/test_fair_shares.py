"""Shared capacity is fair: a key holds at most its plan's share of MCP sessions and of event
streams (SSE, MCP listens), below the server-wide caps, so a second key still gets in."""

from __future__ import annotations

from contextlib import AsyncExitStack

import anyio
import httpx2
import pytest
from mcp.shared.exceptions import MCPError

from tests.conftest import FREE
from tests.http_helpers import error_of, mcp_client, ok
from tests.live_server import LiveServer

pytestmark = [pytest.mark.anyio, pytest.mark.usefixtures("fresh_toolkit_events")]

MCP_HEADERS = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}
INITIALIZE = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "initialize",
    "params": {
        "protocolVersion": "2025-11-25",
        "capabilities": {},
        "clientInfo": {"name": "t", "version": "0"},
    },
}


async def open_session(http: httpx2.AsyncClient) -> httpx2.Response:
    return await http.post("/mcp", json=INITIALIZE, headers=MCP_HEADERS)


async def test_a_key_opens_sessions_up_to_its_share_and_another_key_still_connects(
    live: LiveServer,
) -> None:
    greedy, other = await live.new_key(plan="free"), await live.new_key(plan="free")
    async with live.client(greedy) as as_greedy, live.client(other) as as_other:
        opened = [await open_session(as_greedy) for _ in range(FREE.max_sessions)]
        refused = await open_session(as_greedy)
        others = await open_session(as_other)
        closed = await as_greedy.delete(
            "/mcp", headers={**MCP_HEADERS, "Mcp-Session-Id": opened[0].headers["mcp-session-id"]}
        )
        again = await open_session(as_greedy)
    assert [response.status_code for response in opened] == [200] * FREE.max_sessions
    error = error_of(refused, 429, "RATE_LIMIT_EXCEEDED")
    assert error["limit"] == FREE.max_sessions
    assert refused.headers["retry-after"] == "1"
    assert others.status_code == 200
    assert closed.status_code < 300
    assert again.status_code == 200  # a session given back is a session to open again


async def test_a_key_holds_event_streams_up_to_its_share_and_another_key_still_gets_one(
    live: LiveServer,
) -> None:
    greedy, other = await live.new_key(plan="free"), await live.new_key(plan="free")
    async with live.client(greedy) as as_greedy, live.client(other) as as_other, AsyncExitStack() as held:
        job_id = ok(
            await as_greedy.post("/jobs/submit", json={"tool": "testkit_hold", "arguments": {}}), 202
        )["job_id"]
        client = await held.enter_async_context(mcp_client(live, greedy, "auto"))
        await held.enter_async_context(client.listen(tools_list_changed=True))  # one listen stream
        for _ in range(FREE.max_streams - 1):  # the rest of the share as SSE streams
            stream = await held.enter_async_context(as_greedy.stream("GET", f"/jobs/{job_id}/stream"))
            assert stream.status_code == 200
        one_too_many_sse = await as_greedy.get(f"/jobs/{job_id}/stream")
        with pytest.raises(MCPError) as one_too_many_listen:
            async with client.listen(tools_list_changed=True):
                pass
        other_job = ok(
            await as_other.post("/jobs/submit", json={"tool": "demo_echo", "arguments": {"text": "x"}}), 202
        )["job_id"]
        async with as_other.stream("GET", f"/jobs/{other_job}/stream") as others:
            others_status = others.status_code
    error_of(one_too_many_sse, 429, "RATE_LIMIT_EXCEEDED")
    assert one_too_many_listen.value.error.data["code"] == "RATE_LIMIT_EXCEEDED"  # type: ignore[index]
    assert others_status == 200


async def test_the_stream_share_is_given_back_when_a_stream_ends(live: LiveServer) -> None:
    key = await live.new_key(plan="free")
    async with live.client(key) as http:
        for _ in range(FREE.max_streams + 2):  # more streams one after another than the share
            job_id = ok(
                await http.post("/jobs/submit", json={"tool": "demo_echo", "arguments": {"text": "x"}}), 202
            )["job_id"]
            with anyio.fail_after(10):
                async with http.stream("GET", f"/jobs/{job_id}/stream") as stream:
                    assert stream.status_code == 200
                    async for _ in stream.aiter_lines():
                        pass  # the stream ends with the finished job
