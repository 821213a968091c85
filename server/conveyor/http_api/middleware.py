"""Pure ASGI middleware (so streams stay streams): request ids and the safety net, then access.

``RequestContext`` gives every response an ``X-Request-Id``, turns anything unexpected into
a coded 500, and records request metrics. ``Access`` authenticates the Bearer key, enforces roles, counts executions against the rate limit,
and adds the ``X-RateLimit-*`` headers.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from mcp.server.auth.middleware.bearer_auth import AuthenticatedUser
from starlette.authentication import AuthCredentials
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from conveyor.auth import ApiKeys, Principal
from conveyor.errors import (
    ConveyorError,
    Forbidden,
    InternalError,
    PayloadTooLarge,
    RateLimitExceeded,
    Unauthorized,
)
from conveyor.http_api.mcp import MCP_PATH, HostCheck, access_token
from conveyor.http_api.metrics import Metrics
from conveyor.http_api.responses import JSONResponse, error_response
from conveyor.limits import RateLimiter, RateState
from conveyor.mcp_server.wire import read_message
from conveyor.random_hex import random_hex

logger = logging.getLogger("conveyor.http")
_CLIENT_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
MAX_USERS = 10_000  # keys whose request user is kept made


class RequestContext:
    def __init__(self, app: ASGIApp, *, metrics: Metrics, route_of: Callable[[Scope], str]) -> None:
        self.app = app
        self.metrics = metrics
        self.route_of = route_of

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given = Headers(scope=scope).get("x-request-id", "")
        request_id = given if _CLIENT_REQUEST_ID.match(given) else f"req_{random_hex(8)}"
        scope.setdefault("state", {})["request_id"] = request_id
        started, status = time.perf_counter(), 500
        response_started = False
        id_header = (b"x-request-id", request_id.encode("latin-1"))

        async def send_with_id(message: Message) -> None:
            nonlocal status, response_started
            if message["type"] == "http.response.start":
                response_started, status = True, message["status"]
                _add_headers(message, (id_header,))
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        except Exception:
            logger.exception("request failed", extra={"action": "http.error", "request_id": request_id})
            if not response_started:
                await error_response(InternalError(), request_id)(scope, receive, send_with_id)
        finally:
            self.metrics.observe_request(
                scope["method"], self.route_of(scope), status, time.perf_counter() - started
            )


@dataclass(frozen=True)
class AccessRule:
    access: str  # public | user | admin
    counted: bool = False


class Access:
    def __init__(
        self,
        app: ASGIApp,
        *,
        keys: ApiKeys,
        host_check: HostCheck,
        limiter: RateLimiter,
        rules: dict[tuple[str, str], AccessRule],
        max_body: int,
        max_json_depth: int,
    ) -> None:
        self.app = app
        self.keys = keys
        self.host_check = host_check
        self.limiter = limiter
        self.rules = rules
        self.max_body = max_body
        self.max_json_depth = max_json_depth
        self._users: dict[str, tuple[Principal, AuthenticatedUser, AuthCredentials]] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        method = "GET" if scope["method"] == "HEAD" else scope["method"]  # HEAD is GET without a body
        rule = self.rules.get((method, scope["path"]), AccessRule("user"))
        if rule.access == "public":
            await self.app(scope, receive, send)
            return
        request_id = scope["state"]["request_id"]
        state: RateState | None = None
        try:
            if scope["path"] == MCP_PATH:
                await self.host_check.verify(scope)  # before auth: a rebinding page never gets further
            principal = await self._authenticate(scope)
            if rule.access == "admin" and not principal.is_admin:
                raise Forbidden("This endpoint needs an admin key")
            counted = rule.counted
            if scope["path"] == MCP_PATH and scope["method"] == "POST":
                body = await _read_all(receive, self.max_body)
                message, refused = read_message(body, max_depth=self.max_json_depth)
                if refused is not None:  # a JSON-RPC error, as the MCP transport answers one
                    await JSONResponse(refused, status_code=400)(scope, receive, send)
                    return
                counted = _is_tool_call(message)
                scope["state"]["mcp_message"] = message  # what /mcp answers how (plain_answer)
                scope["state"]["mcp_initialize"] = (
                    isinstance(message, dict) and message.get("method") == "initialize"
                )
                receive = _replay(body, receive)
            state = await (self.limiter.hit(principal) if counted else self.limiter.peek(principal))
            if state is not None and not state.allowed:
                raise RateLimitExceeded(
                    f"Rate limit of {state.limit} executions per minute exceeded",
                    retry_after=state.retry_after(),
                    limit=state.limit,
                )
        except ConveyorError as exc:
            response = error_response(exc, request_id)
            if isinstance(exc, RateLimitExceeded) and state is not None:
                response.headers.update(state.headers())
            await response(scope, receive, send)
            return
        await self.app(scope, receive, _with_rate_headers(send, state))

    async def _authenticate(self, scope: Scope) -> Principal:
        header = Headers(scope=scope).get("authorization", "")
        scheme, _, token = header.partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise Unauthorized("Missing API key: send Authorization: Bearer <key>")
        principal = await self.keys.authenticate(token)  # checked every time: revocation holds at once
        scope["state"]["principal"] = principal
        # What the SDK's own auth middleware would set: /mcp binds sessions to this user. Made
        # once per key and principal (immutable, and checked above on every request).
        seen = self._users.get(token)
        if seen is None or seen[0] != principal:
            if len(self._users) >= MAX_USERS:
                self._users.clear()
            access = access_token(token, principal)
            seen = self._users[token] = (principal, AuthenticatedUser(access), AuthCredentials(access.scopes))
        scope["user"], scope["auth"] = seen[1], seen[2]
        return principal


def _with_rate_headers(send: Send, state: RateState | None) -> Send:
    if state is None:
        return send
    headers = tuple((key.lower().encode(), value.encode()) for key, value in state.headers().items())

    async def send_with_headers(message: Message) -> None:
        if message["type"] == "http.response.start":
            _add_headers(message, headers)
        await send(message)

    return send_with_headers


def _add_headers(start: Message, headers: tuple[tuple[bytes, bytes], ...]) -> None:
    """Add headers no response sets itself (request id, rate limit) to a response's start: appended
    as they are, without the search for an earlier one that ``MutableHeaders`` makes."""
    start["headers"] = [*start.get("headers", ()), *headers]


async def _read_all(receive: Receive, limit: int) -> bytes:
    body = bytearray()
    while True:
        message = await receive()
        if message["type"] != "http.request":
            break
        body.extend(message.get("body", b""))
        if len(body) > limit:
            raise PayloadTooLarge(f"request body is over the {limit} byte limit", limit_bytes=limit)
        if not message.get("more_body", False):
            break
    return bytes(body)


def _replay(body: bytes, receive: Receive) -> Receive:
    delivered = False

    async def replay() -> Message:
        nonlocal delivered
        if not delivered:
            delivered = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


def _is_tool_call(message: Any) -> bool:
    if isinstance(message, dict):  # one message: nearly every request
        return message.get("method") == "tools/call"
    return isinstance(message, list) and any(
        isinstance(m, dict) and m.get("method") == "tools/call" for m in message
    )
