"""MCP over streamable HTTP at /mcp: the same server as stdio, authenticated by API key."""

from __future__ import annotations

import time
from typing import Any

from mcp.server.auth.provider import AccessToken
from mcp.server.context import ServerRequestContext
from mcp.server.streamable_http_manager import StreamableHTTPSessionManager
from mcp.server.transport_security import TransportSecurityMiddleware, TransportSecuritySettings
from starlette.datastructures import Headers
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from conveyor.auth import Principal
from conveyor.errors import Forbidden, InvalidArguments, MisdirectedRequest, RateLimitExceeded, Unauthorized
from conveyor.http_api.plain_answer import SessionManager
from conveyor.http_api.responses import error_response, request_id_of
from conveyor.limits import RateLimiter
from conveyor.mcp_server import build_server
from conveyor.runtime import Runtime
from conveyor.settings import Settings

MCP_PATH = "/mcp"
MAX_HOST_VERDICTS = 1024
SESSION_HEADER = "mcp-session-id"
_LOCAL_HOSTS = ("127.0.0.1", "localhost", "[::1]")


def access_token(token: str, principal: Principal) -> AccessToken:
    """What the SDK's own bearer auth would put on the request for this key: /mcp binds
    sessions to its client id. Made from an authenticated principal, so not validated again."""
    scopes = [f"role:{principal.role}"] + ([f"plan:{principal.plan}"] if principal.plan else [])
    return AccessToken.model_construct(
        token=token,
        client_id=principal.id,
        scopes=scopes,
        expires_at=None,
        resource=None,
        subject=None,
        claims=None,
    )


def principal_of_request(ctx: ServerRequestContext[Any, Any]) -> Principal:
    """The principal the access middleware authenticated for the HTTP request carrying this message."""
    request = ctx.request
    principal = (
        getattr(request, "scope", {}).get("state", {}).get("principal") if request is not None else None
    )
    if not isinstance(principal, Principal):
        raise Unauthorized("No authenticated principal on this MCP request")
    return principal


def transport_security(settings: Settings) -> TransportSecuritySettings:
    """DNS-rebinding protection: local names always, plus the host names the settings allow."""
    hosts = [f"{host}:*" for host in _LOCAL_HOSTS] + list(settings.allowed_hosts)
    origins = [f"http://{host}:*" for host in _LOCAL_HOSTS] + list(settings.allowed_origins)
    return TransportSecuritySettings(
        enable_dns_rebinding_protection=True, allowed_hosts=hosts, allowed_origins=origins
    )


class HostCheck:
    """DNS-rebinding protection (and the JSON content type) for /mcp, checked ahead of the SDK's
    own checks, which answer plain text, so that a refusal carries Conveyor's error body."""

    def __init__(self, settings: Settings) -> None:
        self._check = TransportSecurityMiddleware(transport_security(settings))
        # The verdict depends on these headers alone: worked out once per distinct set of them.
        self._verdicts: dict[tuple[bool, str | None, str | None, str | None], int | None] = {}

    async def verify(self, scope: Scope) -> None:
        headers = Headers(scope=scope)
        is_post = scope["method"] == "POST"
        seen = (is_post, headers.get("host"), headers.get("origin"), headers.get("content-type"))
        if seen in self._verdicts:
            status = self._verdicts[seen]
        else:
            refusal = await self._check.validate_request(Request(scope), is_post=is_post)
            status = None if refusal is None else refusal.status_code
            if len(self._verdicts) >= MAX_HOST_VERDICTS:
                self._verdicts.clear()
            self._verdicts[seen] = status
        if status is None:
            return
        if status == 421:
            raise MisdirectedRequest(f"Host {headers.get('host')!r} is not allowed")
        if status == 403:
            raise Forbidden("This Origin may not call /mcp")
        raise InvalidArguments(
            "MCP messages are sent as application/json",
            argument="Content-Type",
            suggested_fix="Send MCP messages with Content-Type: application/json.",
        )


def session_manager(runtime: Runtime) -> StreamableHTTPSessionManager:
    server = build_server(runtime, principal_of=principal_of_request)
    return SessionManager(
        app=server,
        security_settings=transport_security(runtime.settings),
        max_request_body_size=runtime.settings.max_request_bytes,
        session_idle_timeout=runtime.settings.session_idle_seconds,
        max_sessions=runtime.settings.max_sessions,
    )


class SessionQuota:
    """Per-key caps on MCP sessions (2025-11-25 clients over HTTP), below the session manager's cap.

    The session manager answers 503 to everyone once its cap is reached, whoever took the
    sessions. So sessions are counted here, by key: from the answer that opens one (its
    Mcp-Session-Id) until the client deletes it, the server answers 404 for it, or it has been
    idle as long as the manager lets a session live. A key at its plan's share gets
    429 RATE_LIMIT_EXCEEDED; other keys still connect.
    """

    def __init__(self, app: ASGIApp, *, limiter: RateLimiter, idle_s: float) -> None:
        self.app = app
        self.limiter = limiter
        self.idle_s = idle_s
        self._sessions: dict[str, tuple[str, float]] = {}  # session id -> (owner, last seen)
        self._opening: dict[str, int] = {}  # owner -> opening requests not yet answered

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        principal = scope.get("state", {}).get("principal") if scope["type"] == "http" else None
        limits = self.limiter.limits_for(principal) if isinstance(principal, Principal) else None
        if scope.get("path") != MCP_PATH or limits is None or principal is None:
            await self.app(scope, receive, send)
            return
        session_id = Headers(scope=scope).get(SESSION_HEADER)
        if session_id is not None:
            await self._in_session(session_id, scope, receive, send)
        elif scope["state"].get("mcp_initialize"):
            await self._opening_session(principal, limits.max_sessions, scope, receive, send)
        else:
            await self.app(scope, receive, send)

    async def _in_session(self, session_id: str, scope: Scope, receive: Receive, send: Send) -> None:
        self._touch(session_id)

        async def watch(message: Message) -> None:
            if message["type"] == "http.response.start":
                ended = message["status"] == 404 or (scope["method"] == "DELETE" and message["status"] < 300)
                if ended:
                    self._sessions.pop(session_id, None)
            await send(message)

        try:
            await self.app(scope, receive, watch)
        finally:
            self._touch(session_id)  # a long request keeps its session alive in the manager too

    async def _opening_session(
        self, principal: Principal, limit: int, scope: Scope, receive: Receive, send: Send
    ) -> None:
        owner = principal.id
        if self._held_by(owner) + self._opening.get(owner, 0) >= limit:
            error = RateLimitExceeded(
                f"At most {limit} MCP sessions at once on the {principal.plan} plan; "
                "close one (DELETE /mcp) or let it idle out",
                retry_after=1,
                limit=limit,
            )
            await error_response(error, request_id_of(Request(scope)))(scope, receive, send)
            return
        self._opening[owner] = self._opening.get(owner, 0) + 1

        async def record(message: Message) -> None:
            if message["type"] == "http.response.start":
                opened = Headers(raw=message.get("headers", [])).get(SESSION_HEADER)
                if opened is not None and message["status"] < 400:
                    self._sessions[opened] = (owner, time.monotonic())
            await send(message)

        try:
            await self.app(scope, receive, record)
        finally:
            left = self._opening[owner] - 1
            if left:
                self._opening[owner] = left
            else:
                del self._opening[owner]

    def _touch(self, session_id: str) -> None:
        known = self._sessions.get(session_id)
        if known is not None:
            self._sessions[session_id] = (known[0], time.monotonic())

    def _held_by(self, owner: str) -> int:
        """The owner's sessions still alive; those idle past the manager's timeout are forgotten."""
        cutoff = time.monotonic() - self.idle_s
        expired = [sid for sid, (_, seen) in self._sessions.items() if seen < cutoff]
        for sid in expired:
            del self._sessions[sid]
        return sum(1 for held, _ in self._sessions.values() if held == owner)
