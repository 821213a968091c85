"""MCP over streamable HTTP at /mcp: the same server as stdio, authenticated by API key."""

from __future__ import annotations

from typing import Any

from mcp.server.auth.provider import AccessToken
from mcp.server.context import ServerRequestContext
from mcp.server.streamable_http_manager import StreamableHTTPSessionManager
from mcp.server.transport_security import TransportSecurityMiddleware, TransportSecuritySettings
from starlette.requests import Request
from starlette.types import Scope

from conveyor.auth import ApiKeys, Principal
from conveyor.errors import Forbidden, InvalidArguments, MisdirectedRequest, Unauthorized
from conveyor.mcp_server import build_server
from conveyor.runtime import Runtime
from conveyor.settings import Settings

MCP_PATH = "/mcp"
_LOCAL_HOSTS = ("127.0.0.1", "localhost", "[::1]")


class ApiKeyVerifier:
    """The SDK's ``TokenVerifier`` hook, answering from Conveyor's API keys."""

    def __init__(self, keys: ApiKeys) -> None:
        self.keys = keys

    async def verify_token(self, token: str) -> AccessToken | None:
        try:
            principal = await self.keys.authenticate(token)
        except Unauthorized:
            return None
        scopes = [f"role:{principal.role}"] + ([f"plan:{principal.plan}"] if principal.plan else [])
        return AccessToken(token=token, client_id=principal.id, scopes=scopes)


def principal_of_token(access: AccessToken) -> Principal:
    values = dict(scope.split(":", 1) for scope in access.scopes if ":" in scope)
    role = "admin" if values.get("role") == "admin" else "user"
    plan = values.get("plan")
    return Principal(access.client_id, role, plan if plan in ("free", "pro", "enterprise") else None)  # type: ignore[arg-type]


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

    async def verify(self, scope: Scope) -> None:
        request = Request(scope)
        refusal = await self._check.validate_request(request, is_post=request.method == "POST")
        if refusal is None:
            return
        if refusal.status_code == 421:
            raise MisdirectedRequest(f"Host {request.headers.get('host')!r} is not allowed")
        if refusal.status_code == 403:
            raise Forbidden("This Origin may not call /mcp")
        raise InvalidArguments("MCP messages are sent as application/json", argument="Content-Type")


def session_manager(runtime: Runtime) -> StreamableHTTPSessionManager:
    server = build_server(runtime, principal_of=principal_of_request)
    return StreamableHTTPSessionManager(
        app=server,
        security_settings=transport_security(runtime.settings),
        max_request_body_size=runtime.settings.max_request_bytes,
    )
