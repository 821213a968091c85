"""2025-11-25 requests in a session that nothing can precede the answer of are answered as plain
JSON by the session's own transport; the others as event streams, as before. Against a real
uvicorn, with raw HTTP (a session opened by hand) and the SDK's client."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import anyio
import httpx2
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.server.streamable_http import REQUEST_CANCELLED

from conveyor.http_api import plain_answer
from tests import toolkits
from tests.conftest import make_settings
from tests.http_helpers import MODERN, sse_events
from tests.live_server import LiveServer, live_server

pytestmark = [pytest.mark.anyio, pytest.mark.usefixtures("fresh_toolkit_events")]
VERSION = "2025-11-25"
BOTH = "application/json, text/event-stream"


@pytest.fixture(scope="module")
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="module")
async def server(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[LiveServer]:
    async with live_server(make_settings(tmp_path_factory.mktemp("sessions"))) as server:
        yield server


class Session:
    """A 2025-11-25 session opened by hand: initialize, then notifications/initialized."""

    def __init__(self, http: httpx2.AsyncClient, key: str) -> None:
        self.http = http
        self.key = key
        self.id = ""

    def headers(self, accept: str = BOTH) -> dict[str, str]:
        headers = {
            "Authorization": f"Bearer {self.key}",
            "Accept": accept,
            "Content-Type": "application/json",
            "MCP-Protocol-Version": VERSION,
        }
        return {**headers, "Mcp-Session-Id": self.id} if self.id else headers

    async def open(self) -> Session:
        params = {
            "protocolVersion": VERSION,
            "capabilities": {},
            "clientInfo": {"name": "raw", "version": "0"},
        }
        response = await self.http.post(
            "/mcp",
            json={"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": params},
            headers=self.headers(),
        )
        assert response.status_code == 200, response.text
        self.id = response.headers["mcp-session-id"]
        initialized = {"jsonrpc": "2.0", "method": "notifications/initialized"}
        assert (await self.http.post("/mcp", json=initialized, headers=self.headers())).status_code == 202
        return self


def tools_call(
    name: str, arguments: dict[str, Any], *, id: int = 7, progress_token: str | None = None
) -> dict[str, Any]:
    params: dict[str, Any] = {"name": name, "arguments": arguments}
    if progress_token is not None:
        params["_meta"] = {"progressToken": progress_token}
    return {"jsonrpc": "2.0", "id": id, "method": "tools/call", "params": params}


async def test_a_call_without_a_progress_token_is_answered_as_plain_json(server: LiveServer) -> None:
    async with server.client() as http:
        session = await Session(http, server.admin_key).open()
        response = await http.post(
            "/mcp", json=tools_call("testkit_blocking_sum", {"numbers": [1, 2, 3]}), headers=session.headers()
        )
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert response.headers["mcp-session-id"] == session.id
    assert response.headers["x-request-id"].startswith("req_")
    reply = response.json()
    assert reply["id"] == 7
    assert reply["result"]["content"][0]["text"] == "6"


async def test_progress_of_a_call_without_a_token_is_not_taken_for_its_answer(server: LiveServer) -> None:
    """The tool reports progress; with no token asked for, none is sent, and the JSON answer is
    the call's reply (a message about the request would be taken for it)."""
    async with server.client() as http, anyio.create_task_group() as tg:
        session = await Session(http, server.admin_key).open()
        replies: list[httpx2.Response] = []

        async def call() -> None:
            replies.append(
                await http.post("/mcp", json=tools_call("testkit_hold", {}), headers=session.headers())
            )

        tg.start_soon(call)
        with anyio.fail_after(10):
            await toolkits.started.wait()
        toolkits.release.set()
    assert replies[0].headers["content-type"] == "application/json"
    assert replies[0].json()["id"] == 7
    assert replies[0].json()["result"]["content"][0]["text"] == "released"


async def test_a_call_with_a_progress_token_streams_its_progress(server: LiveServer) -> None:
    async with server.client() as http:
        session = await Session(http, server.admin_key).open()
        call = tools_call("testkit_hold", {}, progress_token="p1")
        async with http.stream("POST", "/mcp", json=call, headers=session.headers()) as response:
            assert response.headers["content-type"] == "text/event-stream"
            with anyio.fail_after(10):
                await toolkits.started.wait()
            toolkits.release.set()
            text = (await response.aread()).decode()
    events = sse_events(text)
    assert events[0]["method"] == "notifications/progress"
    assert events[0]["params"]["progressToken"] == "p1"
    assert events[-1]["result"]["content"][0]["text"] == "released"


async def test_a_json_answer_and_a_stream_in_flight_at_once_in_one_session(server: LiveServer) -> None:
    """The session's message router serves both: the progress goes to the stream, the JSON
    answer gets only its own reply."""
    async with server.client() as http:
        session = await Session(http, server.admin_key).open()
        held = tools_call("testkit_hold", {}, id=1, progress_token="p1")
        async with http.stream("POST", "/mcp", json=held, headers=session.headers()) as stream:
            with anyio.fail_after(10):
                await toolkits.started.wait()
            plain = await http.post(
                "/mcp",
                json=tools_call("testkit_blocking_sum", {"numbers": [4, 5]}, id=2),
                headers=session.headers(),
            )
            assert plain.headers["content-type"] == "application/json"
            assert plain.json()["id"] == 2
            assert plain.json()["result"]["content"][0]["text"] == "9"
            toolkits.release.set()
            events = sse_events((await stream.aread()).decode())
    assert [event.get("method") for event in events[:-1]] == ["notifications/progress"] * (len(events) - 1)
    assert events[-1]["id"] == 1
    assert events[-1]["result"]["content"][0]["text"] == "released"


async def test_a_call_silent_past_the_ping_interval_gets_pings_and_its_answer_as_an_event(
    server: LiveServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(plain_answer, "PING_S", 0.2)
    async with server.client() as http:
        session = await Session(http, server.admin_key).open()
        call = tools_call("testkit_hold_uncancellable", {})
        async with http.stream("POST", "/mcp", json=call, headers=session.headers()) as response:
            assert response.status_code == 200
            assert response.headers["content-type"] == "text/event-stream"
            assert response.headers["mcp-session-id"] == session.id
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


async def test_a_cancelled_notification_cancels_the_call_and_ends_its_request(server: LiveServer) -> None:
    async with server.client() as http, anyio.create_task_group() as tg:
        session = await Session(http, server.admin_key).open()
        replies: list[httpx2.Response] = []

        async def call() -> None:
            replies.append(
                await http.post(
                    "/mcp", json=tools_call("testkit_hold_observed", {}), headers=session.headers()
                )
            )

        tg.start_soon(call)
        with anyio.fail_after(10):
            await toolkits.started.wait()
        cancel = {"jsonrpc": "2.0", "method": "notifications/cancelled", "params": {"requestId": 7}}
        assert (await http.post("/mcp", json=cancel, headers=session.headers())).status_code == 202
        with anyio.fail_after(10):
            await toolkits.interrupted.wait()
    assert replies[0].headers["content-type"] == "application/json"
    assert replies[0].json()["error"]["code"] == REQUEST_CANCELLED


async def test_closing_the_connection_leaves_the_call_running_in_its_session(
    server: LiveServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """2025-11-25 cancels by notification, not by a closed connection (as with an SSE answer):
    the closed connection ends only the wait for the answer."""
    monkeypatch.setattr(plain_answer, "WATCH_AFTER_S", 0)  # watch the connection from the start
    wait_ended = anyio.Event()
    run = plain_answer._Exchange.run

    async def observed_run(exchange: Any, call: Any) -> None:
        try:
            await run(exchange, call)
        finally:
            wait_ended.set()

    monkeypatch.setattr(plain_answer._Exchange, "run", observed_run)
    async with server.client() as http:
        session = await Session(http, server.admin_key).open()
        async with anyio.create_task_group() as tg:

            async def call() -> None:
                await http.post(
                    "/mcp", json=tools_call("testkit_hold_observed", {}), headers=session.headers()
                )

            tg.start_soon(call)
            with anyio.fail_after(10):
                await toolkits.started.wait()
            tg.cancel_scope.cancel()  # the client gives up: its connection closes
        with anyio.fail_after(10):
            await wait_ended.wait()
        assert not toolkits.interrupted.is_set()
        # The session goes on: another call in it is answered.
        response = await http.post(
            "/mcp",
            json=tools_call("testkit_blocking_sum", {"numbers": [2, 2]}, id=8),
            headers=session.headers(),
        )
        assert response.json()["result"]["content"][0]["text"] == "4"
        assert not toolkits.interrupted.is_set()
        toolkits.release.set()


async def test_accept_without_event_streams_is_refused_as_before(server: LiveServer) -> None:
    async with server.client() as http:
        session = await Session(http, server.admin_key).open()
        response = await http.post(
            "/mcp",
            json=tools_call("testkit_blocking_sum", {"numbers": [1]}),
            headers=session.headers(accept="application/json"),
        )
    assert response.status_code == 406


async def test_the_sdk_client_in_the_2025_era_reads_json_answers(server: LiveServer) -> None:
    answered_as: list[str] = []

    async def on_response(response: httpx2.Response) -> None:
        if b'"tools/call"' in response.request.content:
            answered_as.append(response.headers.get("content-type", ""))

    http = httpx2.AsyncClient(
        headers={"Authorization": f"Bearer {server.admin_key}"},
        timeout=30,
        event_hooks={"response": [on_response]},
    )
    transport = streamable_http_client(f"{server.url}/mcp", http_client=http)
    async with http, Client(transport, mode="legacy") as client:
        result = await client.call_tool("testkit_blocking_sum", {"numbers": [4, 5]})
    assert result.content[0].text == "9"  # type: ignore[union-attr]
    assert answered_as == ["application/json"]


SESSION = [(b"mcp-session-id", b"abc")]
ACCEPT_BOTH = [(b"accept", BOTH.encode())]


@pytest.mark.parametrize(
    ("headers", "message", "session"),
    [
        (SESSION + ACCEPT_BOTH + [(b"mcp-protocol-version", VERSION.encode())], tools_call("x", {}), b"abc"),
        (SESSION + ACCEPT_BOTH, tools_call("x", {}), b"abc"),  # no version header: the 2025 era
        ([*SESSION, (b"accept", b"*/*")], tools_call("x", {}), b"abc"),
        ([*SESSION, (b"accept", b"application/*, text/*")], tools_call("x", {}), b"abc"),
        ([*SESSION, (b"accept", b"application/json")], tools_call("x", {}), None),
        (SESSION, tools_call("x", {}), None),
        (ACCEPT_BOTH, tools_call("x", {}), None),  # no session
        (SESSION + ACCEPT_BOTH, tools_call("x", {}, progress_token="t"), None),
        (SESSION + ACCEPT_BOTH, {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {}}, None),
        (SESSION + ACCEPT_BOTH, {"jsonrpc": "2.0", "method": "notifications/cancelled", "params": {}}, None),
        (SESSION + ACCEPT_BOTH, {"jsonrpc": "2.0", "id": 1, "result": {}}, None),  # a client's reply
        (SESSION + ACCEPT_BOTH, [tools_call("x", {})], None),
        (SESSION + ACCEPT_BOTH + [(b"mcp-protocol-version", MODERN.encode())], tools_call("x", {}), None),
    ],
)
def test_which_requests_in_a_session_are_answered_plain(
    headers: list[tuple[bytes, bytes]], message: Any, session: bytes | None
) -> None:
    assert plain_answer.answers_plain_in_session({"headers": headers}, message) == session
