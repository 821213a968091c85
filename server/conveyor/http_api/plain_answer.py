"""Requests to /mcp answered as plain JSON, where nothing can be sent before the answer: in both eras.

The SDK answers a request one of two ways, chosen per server: JSON, run in the request's own
task; or SSE, run beside a disconnect watcher in a task group with a stream between them (in
the 2026 era it stays JSON unless a notification comes first). The second costs about as much
server CPU as the whole rest of a no-op call, in either era. Conveyor sends nothing about a
request but its progress, so a request without a progress token (and, in the 2026 era, not
``subscriptions/listen``, which is a stream) takes the first way, and keeps what the second
gives it:

- a call silent for ``PING_S`` still gets keepalive pings, so that no proxy cuts it for idling:
  the answer is then committed as an event stream and the JSON reply comes as its one event,
  as the SDK's SSE answer does;
- closing the connection stops the wait for the answer (a watcher starts once the call has run
  for ``WATCH_AFTER_S``; most calls end sooner, and then no task was started at all). In the
  2026 era that cancels the call; a 2025 call goes on in its session, as it does when an SSE
  answer's connection closes (that era cancels by ``notifications/cancelled``).

A 2025-11-25 request belongs to a session whose transport only the SDK holds: there the choice
is the transport's (``SessionManager``), made per request by ``answers_plain_in_session``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from typing import Any

import anyio
from mcp.server._streamable_http_modern import handle_modern_request  # the SDK's 2026 entry
from mcp.server.auth.middleware.bearer_auth import AuthorizationContext
from mcp.server.streamable_http import MCP_SESSION_ID_HEADER, StreamableHTTPServerTransport
from mcp.server.streamable_http_manager import StreamableHTTPSessionManager
from mcp.shared.inbound import MCP_PROTOCOL_VERSION_HEADER
from mcp.shared.jsonrpc_dispatcher import progress_token_from_params
from mcp_types.version import HANDSHAKE_PROTOCOL_VERSIONS
from starlette.types import Message, Receive, Scope, Send

from conveyor.auth import Principal
from conveyor.http_api.plain_tool_call import EVENT_STREAM, JSON, accepts, answer, recognize
from conveyor.mcp_server.server import ToolCalls
from conveyor.runtime import Runtime

WATCH_AFTER_S = 0.05
PING_S = 15.0  # as the SDK's SSE answer pings
_VERSION_HEADER = MCP_PROTOCOL_VERSION_HEADER.lower().encode("ascii")
_SESSION_HEADER = MCP_SESSION_ID_HEADER.encode("ascii")
_SSE_HEADERS = (
    (b"content-type", b"text/event-stream"),
    (b"cache-control", b"no-cache, no-transform"),
    (b"connection", b"keep-alive"),
    (b"x-accel-buffering", b"no"),
)
_PING: Message = {"type": "http.response.body", "body": b": ping\r\n\r\n", "more_body": True}
# Set around a 2025 request that ``answers_plain_in_session`` picked: its session's transport
# answers that one as JSON (``_TransportAnsweringPerRequest``).
_ANSWER_AS_JSON: ContextVar[bool] = ContextVar("conveyor_answer_as_json", default=False)


def answers_plain(scope: Scope, message: Any) -> bool:
    """Whether this POST to /mcp is a 2026 request that nothing can precede the answer of."""
    version = _header(scope, _VERSION_HEADER)
    if version is None or version.decode("latin-1") in HANDSHAKE_PROTOCOL_VERSIONS:
        return False  # the 2025 era: sessions are the SDK's (answers_plain_in_session)
    return _is_plain_request(message) and message.get("method") != "subscriptions/listen"


def answers_plain_in_session(scope: Scope, message: Any) -> bytes | None:
    """The session id, if this POST to /mcp is a 2025-era request in a session that nothing can
    precede the answer of; else None (the SDK answers it as an event stream). ``initialize``
    opens a session (and starts its tasks in the request's context): never picked."""
    version = _header(scope, _VERSION_HEADER)
    if version is not None and version.decode("latin-1") not in HANDSHAKE_PROTOCOL_VERSIONS:
        return None  # the 2026 era
    session = _header(scope, _SESSION_HEADER)
    if session is None or not _is_plain_request(message) or message.get("method") == "initialize":
        return None
    # The SDK's event-stream answer needs both in Accept (else 406); its JSON answer, only JSON.
    # Picked only where both are accepted, so a request is refused exactly as before.
    accept = (_header(scope, b"accept") or b"").decode("latin-1")
    return session if accepts(accept, JSON, EVENT_STREAM) else None


def _is_plain_request(message: Any) -> bool:
    """One request (not a notification, a response or a batch) that asks for no progress."""
    if not isinstance(message, dict) or "id" not in message or "method" not in message:
        return False
    params = message.get("params")
    return not isinstance(params, dict) or progress_token_from_params(params) is None


def _header(scope: Scope, name: bytes) -> bytes | None:
    return next((value for key, value in scope["headers"] if key == name), None)


class _TransportAnsweringPerRequest(StreamableHTTPServerTransport):
    """The SDK's 2025 session transport, answering as JSON the requests it is told to
    (``_ANSWER_AS_JSON``, set in the request's task around it), the others as event streams.

    Its message router runs in the session's task, where the flag is never set: it routes a
    message related to a request into that request's stream, where a JSON answer would take it
    for the reply. So only requests nothing is sent about are picked (no progress token: Conveyor
    sends nothing else about a request, and a JSON-answered request may not send the client
    requests, which the transport already refuses)."""

    @property
    def is_json_response_enabled(self) -> bool:
        return _ANSWER_AS_JSON.get()

    @is_json_response_enabled.setter
    def is_json_response_enabled(self, value: bool) -> None:
        pass  # the session-wide mode the SDK sets at construction: chosen per request instead


class SessionManager(StreamableHTTPSessionManager):
    """The SDK's session manager, whose 2025 sessions answer JSON or an event stream per request."""

    def _admit_session(self, requestor: AuthorizationContext | None) -> StreamableHTTPServerTransport | None:
        transport = super()._admit_session(requestor)
        if transport is not None:
            # The SDK builds its own transport class here (no factory to give it one): the
            # subclass adds no state, only where the answer mode is read from.
            transport.__class__ = _TransportAnsweringPerRequest
        return transport


class _Exchange:
    """One request's call, its lazy disconnect watcher, and its pings."""

    def __init__(
        self, receive: Receive, send: Send, stream_headers: tuple[tuple[bytes, bytes], ...] = ()
    ) -> None:
        self._receive = receive
        self._send = send
        # The start of the answer if it becomes an event stream: the SDK's SSE headers, plus these.
        self._stream_start: Message = {
            "type": "http.response.start",
            "status": 200,
            "headers": [*_SSE_HEADERS, *stream_headers],
        }
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
                        await self._send(self._stream_start)
                        self._streaming = True
                    await self._send(_PING)
        except Exception:  # a ping the closed connection refused: the client is gone
            self._call.cancel()


class McpEndpoint:
    """/mcp: what ``answers_plain`` picks as plain JSON, as the SDK's JSON mode answers it (a
    plain tools/call by Conveyor itself: ``plain_tool_call``); what ``answers_plain_in_session``
    picks, by its session's transport as JSON; everything else by the session manager as it
    would."""

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
        if scope["method"] != "POST":
            await self._sessions.handle_request(scope, receive, send)
            return
        if not answers_plain(scope, message):
            await self._answer_in_session(scope, receive, send, answers_plain_in_session(scope, message))
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

    async def _answer_in_session(
        self, scope: Scope, receive: Receive, send: Send, session: bytes | None
    ) -> None:
        if session is None:
            await self._sessions.handle_request(scope, receive, send)
            return
        exchange = _Exchange(receive, send, ((_SESSION_HEADER, session),))
        answer_as_json = _ANSWER_AS_JSON.set(True)
        try:
            await exchange.run(lambda: self._sessions.handle_request(scope, receive, exchange.send))
        finally:
            _ANSWER_AS_JSON.reset(answer_as_json)


def _no_schema(name: str) -> Any:
    raise LookupError(f"no input schema lookup for {name}")
