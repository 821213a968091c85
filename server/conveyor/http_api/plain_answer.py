"""2026-07-28 requests over HTTP answered as plain JSON, where nothing can be sent before the answer.

The SDK answers a 2026 request one of two ways, chosen per server: JSON, run in the request's
own task; or SSE, run beside a disconnect watcher in a task group with a stream between them,
which stays JSON unless a notification comes first. The second costs about as much server CPU
as the whole rest of a no-op call. Conveyor sends a 2026 request nothing but its progress, so a
request without a progress token (and not ``subscriptions/listen``, which is a stream) takes the
first way, and keeps what the second gives it:

- closing the connection cancels the call: a watcher starts once the call has run for
  ``WATCH_AFTER_S`` (most calls end sooner, and then no task was started at all);
- a call silent for ``PING_S`` still gets keepalive pings, so that no proxy cuts it for idling:
  the answer is then committed as an event stream and the JSON reply comes as its one event,
  as the SDK's SSE answer does.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
from mcp.server._streamable_http_modern import handle_modern_request  # the SDK's 2026 entry
from mcp.server.streamable_http_manager import StreamableHTTPSessionManager
from mcp.shared.inbound import MCP_PROTOCOL_VERSION_HEADER
from mcp.shared.jsonrpc_dispatcher import progress_token_from_params
from mcp_types.version import HANDSHAKE_PROTOCOL_VERSIONS
from starlette.types import Message, Receive, Scope, Send

from conveyor.auth import Principal
from conveyor.http_api.plain_tool_call import answer, recognize
from conveyor.mcp_server.server import ToolCalls
from conveyor.runtime import Runtime

WATCH_AFTER_S = 0.05
PING_S = 15.0  # as the SDK's SSE answer pings
_VERSION_HEADER = MCP_PROTOCOL_VERSION_HEADER.lower().encode("ascii")
_SSE_START: Message = {
    "type": "http.response.start",
    "status": 200,
    "headers": [
        (b"content-type", b"text/event-stream"),
        (b"cache-control", b"no-cache, no-transform"),
        (b"connection", b"keep-alive"),
        (b"x-accel-buffering", b"no"),
    ],
}
_PING: Message = {"type": "http.response.body", "body": b": ping\r\n\r\n", "more_body": True}


def answers_plain(scope: Scope, message: Any) -> bool:
    """Whether this POST to /mcp is a 2026 request that nothing can precede the answer of."""
    version = next((value for name, value in scope["headers"] if name == _VERSION_HEADER), None)
    if version is None or version.decode("latin-1") in HANDSHAKE_PROTOCOL_VERSIONS:
        return False  # the 2025 era: sessions and streams are the SDK's
    if not isinstance(message, dict) or "id" not in message:
        return False  # a notification, or not one request: the SDK answers it
    params = message.get("params")
    return message.get("method") != "subscriptions/listen" and (
        not isinstance(params, dict) or progress_token_from_params(params) is None
    )


class _Exchange:
    """One request's call, its lazy disconnect watcher, and its pings."""

    def __init__(self, receive: Receive, send: Send) -> None:
        self._receive = receive
        self._send = send
        self._call = anyio.CancelScope()
        # The watcher's pings and the answer take turns, once there is a watcher: made by it.
        self._lock: anyio.Lock | None = None
        self._answering = False  # the answer has begun: no more pings
        self._streaming = False  # committed as an event stream: the answer comes as an event

    async def run(self, call: Callable[[], Awaitable[None]]) -> None:
        loop = asyncio.get_running_loop()  # uvicorn serves on asyncio
        watcher: asyncio.Task[None] | None = None

        def start_watching() -> None:
            nonlocal watcher
            watcher = loop.create_task(self._watch())

        timer = loop.call_later(WATCH_AFTER_S, start_watching)
        try:
            with self._call:
                await call()
        finally:
            timer.cancel()
            if watcher is not None:
                watcher.cancel()

    async def send(self, message: Message) -> None:
        self._answering = True  # before any wait: a watcher that gets the lock next sends no ping
        if self._lock is None:  # no watcher, or one that has not begun: nothing to take turns with
            await self._send(message)
            return
        async with self._lock:
            if not self._streaming:
                await self._send(message)
            elif message["type"] == "http.response.body":  # the reply, one JSON body, as an event
                body = message.get("body", b"")
                await self._send(
                    {"type": "http.response.body", "body": b"event: message\r\ndata: " + body + b"\r\n\r\n"}
                )

    async def _watch(self) -> None:
        """Cancel the call when the client goes; ping while it runs silent."""
        self._lock = anyio.Lock(fast_acquire=True)
        try:
            while True:
                with anyio.move_on_after(PING_S - (WATCH_AFTER_S if not self._streaming else 0)):
                    while (await self._receive())["type"] != "http.disconnect":
                        pass
                    self._call.cancel()
                    return
                async with self._lock:
                    if self._answering:
                        return
                    if not self._streaming:
                        await self._send(_SSE_START)
                        self._streaming = True
                    await self._send(_PING)
        except Exception:  # a ping the closed connection refused: the client is gone
            self._call.cancel()


class McpEndpoint:
    """/mcp: what ``answers_plain`` picks as plain JSON, as the SDK's JSON mode answers it (a
    plain tools/call by Conveyor itself: ``plain_tool_call``); everything else by the session
    manager."""

    def __init__(self, sessions: StreamableHTTPSessionManager, runtime: Runtime) -> None:
        self._sessions = sessions
        self._registry = runtime.registry
        self._calls = ToolCalls(runtime)
        server = sessions.app
        self._input_schema = server.get_tool_input_schema or _no_schema
        self._server_info = server.server_info_stamp  # a copy of its own; only ever serialised

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        state = scope.get("state", {})
        message = state.get("mcp_message")
        if scope["method"] != "POST" or not answers_plain(scope, message):
            await self._sessions.handle_request(scope, receive, send)
            return
        exchange = _Exchange(receive, send)
        principal = state.get("principal")
        call = recognize(scope, message, self._registry, self._input_schema)
        if call is not None and isinstance(principal, Principal):
            calls, server_info = self._calls, self._server_info
            await exchange.run(lambda: answer(call, principal, calls, server_info, exchange.send))
            return
        sessions = self._sessions
        await exchange.run(
            # No lifespan state: Conveyor's server lifespan yields none.
            lambda: handle_modern_request(
                sessions.app, sessions.security_settings, True, None, scope, receive, exchange.send
            )
        )


def _no_schema(name: str) -> Any:
    raise LookupError(f"no input schema lookup for {name}")
