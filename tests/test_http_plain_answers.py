"""2026-07-28 requests over HTTP that nothing can precede the answer of are answered as plain JSON,
keeping what the SDK's SSE answer gives them: a closed connection cancels the call, and a call
silent for long gets keepalive pings. Against a real uvicorn, with raw HTTP and the SDK's client."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import anyio
import httpx2
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp_types import HEADER_MISMATCH

from conveyor.http_api import plain_answer
from tests import toolkits
from tests.conftest import make_settings
from tests.http_helpers import MODERN as VERSION
from tests.http_helpers import MODERN_META as META
from tests.http_helpers import mcp_client, sse_events
from tests.live_server import LiveServer, live_server

pytestmark = [pytest.mark.anyio, pytest.mark.usefixtures("fresh_toolkit_events")]


@pytest.fixture(scope="module")
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="module")
async def server(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[LiveServer]:
    async with live_server(make_settings(tmp_path_factory.mktemp("plain"))) as server:
        yield server


def tools_call(name: str, arguments: dict[str, Any], *, progress_token: str | None = None) -> dict[str, Any]:
    meta = {**META, **({"progressToken": progress_token} if progress_token else {})}
    return {
        "jsonrpc": "2.0",
        "id": 7,
        "method": "tools/call",
        "params": {"name": name, "arguments": arguments, "_meta": meta},
    }


def headers(key: str, name: str) -> dict[str, str]:
    return {
        "Authorization": f"Bearer {key}",
        "Accept": "application/json, text/event-stream",
        "Content-Type": "application/json",
        "MCP-Protocol-Version": VERSION,
        "Mcp-Method": "tools/call",
        "Mcp-Name": name,
    }


async def test_a_call_without_a_progress_token_is_answered_as_plain_json(server: LiveServer) -> None:
    async with server.client() as http:
        response = await http.post(
            "/mcp",
            json=tools_call("testkit_blocking_sum", {"numbers": [1, 2, 3]}),
            headers=headers(server.admin_key, "testkit_blocking_sum"),
        )
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert response.headers["x-request-id"].startswith("req_")
    reply = response.json()
    assert reply["id"] == 7
    assert reply["result"]["content"][0]["text"] == "6"


async def test_an_unknown_tool_keeps_the_sdk_s_json_rpc_error_and_status(server: LiveServer) -> None:
    async with server.client() as http:
        response = await http.post(
            "/mcp",
            json=tools_call("no_such_tool", {}),
            headers=headers(server.admin_key, "no_such_tool"),
        )
    assert response.headers["content-type"] == "application/json"
    reply = response.json()
    assert reply["error"]["code"] == -32602
    assert reply["error"]["data"]["code"] == "TOOL_NOT_FOUND"


async def test_a_call_with_a_progress_token_streams_its_progress(server: LiveServer) -> None:
    async with (
        server.client() as http,
        http.stream(
            "POST",
            "/mcp",
            json=tools_call("testkit_hold", {}, progress_token="p1"),
            headers=headers(server.admin_key, "testkit_hold"),
        ) as response,
    ):
        assert response.headers["content-type"] == "text/event-stream"
        with anyio.fail_after(10):
            await toolkits.started.wait()
        toolkits.release.set()
        text = (await response.aread()).decode()
    events = sse_events(text)
    assert events[0]["method"] == "notifications/progress"
    assert events[0]["params"]["progressToken"] == "p1"
    assert events[-1]["result"]["content"][0]["text"] == "released"


async def test_closing_the_connection_cancels_the_call(server: LiveServer) -> None:
    async with server.client() as http, anyio.create_task_group() as tg:

        async def call() -> None:
            await http.post(
                "/mcp",
                json=tools_call("testkit_hold_observed", {}),
                headers=headers(server.admin_key, "testkit_hold_observed"),
            )

        tg.start_soon(call)
        with anyio.fail_after(10):
            await toolkits.started.wait()
        tg.cancel_scope.cancel()  # the client gives up: its connection closes
    with anyio.fail_after(10):
        await toolkits.interrupted.wait()
    assert not toolkits.release.is_set()  # it was cancelled, not released


async def test_a_call_silent_past_the_ping_interval_gets_pings_and_its_answer_as_an_event(
    server: LiveServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(plain_answer, "PING_S", 0.2)
    async with (
        server.client() as http,
        http.stream(
            "POST",
            "/mcp",
            json=tools_call("testkit_hold_uncancellable", {}),
            headers=headers(server.admin_key, "testkit_hold_uncancellable"),
        ) as response,
    ):
        assert response.status_code == 200
        assert response.headers["content-type"] == "text/event-stream"
        chunks = response.aiter_text()
        with anyio.fail_after(10):
            first = await chunks.__anext__()
        assert first.startswith(": ping")
        toolkits.release.set()
        rest = "".join([chunk async for chunk in chunks])
    events = sse_events(first + rest)
    assert len(events) == 1
    assert events[0]["id"] == 7
    assert events[0]["result"]["content"][0]["text"] == "released"


async def test_the_sdk_client_reads_a_pinged_answer(
    server: LiveServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(plain_answer, "PING_S", 0.1)
    streaming = anyio.Event()

    async def on_response(response: httpx2.Response) -> None:
        if response.headers.get("content-type") == "text/event-stream":
            streaming.set()  # the first ping committed the answer as a stream

    http = httpx2.AsyncClient(
        headers={"Authorization": f"Bearer {server.admin_key}"},
        timeout=30,
        event_hooks={"response": [on_response]},
    )
    transport = streamable_http_client(f"{server.url}/mcp", http_client=http)
    results: list[Any] = []
    async with http, Client(transport, mode="auto") as client, anyio.create_task_group() as tg:

        async def call() -> None:
            results.append(await client.call_tool("testkit_hold_uncancellable", {}))

        tg.start_soon(call)
        with anyio.fail_after(10):
            await streaming.wait()
        toolkits.release.set()
    assert not results[0].is_error
    assert results[0].content[0].text == "released"  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("version", "message", "plain"),
    [
        (VERSION, tools_call("x", {}), True),
        (VERSION, tools_call("x", {}, progress_token="t"), False),
        (VERSION, {"jsonrpc": "2.0", "id": 1, "method": "subscriptions/listen", "params": {}}, False),
        (VERSION, {"jsonrpc": "2.0", "method": "notifications/cancelled", "params": {}}, False),
        (VERSION, [tools_call("x", {})], False),
        ("2025-11-25", tools_call("x", {}), False),
        (None, tools_call("x", {}), False),
    ],
)
def test_which_requests_are_answered_plain(version: str | None, message: Any, plain: bool) -> None:
    raw = [] if version is None else [(b"mcp-protocol-version", version.encode())]
    assert plain_answer.answers_plain({"headers": raw}, message) is plain


async def test_a_2025_client_still_works_over_the_session_manager(server: LiveServer) -> None:
    async with mcp_client(server, server.admin_key, "legacy") as client:
        result = await client.call_tool("testkit_blocking_sum", {"numbers": [4, 5]})
    assert result.content[0].text == "9"  # type: ignore[union-attr]


async def test_a_request_the_sdk_refuses_is_refused_as_before(server: LiveServer) -> None:
    wrong = {**headers(server.admin_key, "testkit_blocking_sum"), "Mcp-Name": "another_tool"}
    async with httpx2.AsyncClient(base_url=server.url, timeout=30) as http:
        response = await http.post(
            "/mcp", json=tools_call("testkit_blocking_sum", {"numbers": [1]}), headers=wrong
        )
    assert response.status_code == 400
    assert response.json()["error"]["code"] == HEADER_MISMATCH
