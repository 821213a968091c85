"""Assembles the Starlette app (REST, /mcp, OpenAPI, metrics) and serves it with uvicorn."""

from __future__ import annotations

import logging
import signal
import socket
import sys
import threading
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from types import FrameType

import anyio
import uvicorn
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.types import Scope

import conveyor
from conveyor.auth import Principal
from conveyor.errors import ConfigError, ConveyorError, MethodNotAllowed, RouteNotFound
from conveyor.http_api.endpoints import ENDPOINTS, Endpoint
from conveyor.http_api.mcp import MCP_PATH, HostCheck, SessionQuota, session_manager
from conveyor.http_api.metrics import Metrics
from conveyor.http_api.middleware import Access, AccessRule, RequestContext
from conveyor.http_api.models import JobEvent
from conveyor.http_api.openapi import build_openapi
from conveyor.http_api.plain_answer import McpEndpoint
from conveyor.http_api.responses import JSONResponse, error_response, request_id_of
from conveyor.http_api.stream import stream_job
from conveyor.http_api.ui import UiDoor, build_ui
from conveyor.runtime import Runtime, Shutdown, freeze_startup_objects, open_runtime
from conveyor.settings import Settings

logger = logging.getLogger("conveyor.http")


def build_app(runtime: Runtime) -> Starlette:
    metrics = Metrics()
    mcp_sessions = session_manager(runtime)
    endpoints = _all_endpoints(runtime, metrics)
    openapi: dict[str, object] = {}  # filled below, from every endpoint including this one

    async def serve_openapi(request: Request, runtime: Runtime, principal: Principal | None) -> Response:
        return JSONResponse(openapi)

    endpoints += (
        Endpoint(
            "GET",
            "/openapi.json",
            serve_openapi,
            "This OpenAPI 3.1 document",
            access="public",
            responses={200: "application/json"},
        ),
    )
    openapi.update(build_openapi(endpoints, version=conveyor.__version__))
    by_path: dict[str, dict[str, Endpoint]] = {}
    for e in endpoints:
        by_path.setdefault(e.path, {})[e.method] = e
    # One route per path, so a 405's Allow lists every method of that path.
    routes: list[BaseRoute] = [
        Route(path, _bind(methods, runtime), methods=list(methods)) for path, methods in by_path.items()
    ]
    # First: /mcp carries most requests, and the router tries routes in order.
    routes.insert(0, Route(MCP_PATH, McpEndpoint(mcp_sessions, runtime), methods=["GET", "POST", "DELETE"]))
    route_names = {id(route.endpoint): route.path for route in routes if isinstance(route, Route)}

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async with mcp_sessions.run(), anyio.create_task_group() as tg:
            tg.start_soon(metrics.collect_jobs, runtime.events)
            yield
            tg.cancel_scope.cancel()

    def route_of(scope: Scope) -> str:
        name = route_names.get(id(scope.get("endpoint")))
        if name is None and isinstance(scope.get("route"), Route | Mount):  # the jobs page's own routes
            name = scope["route"].path
        return name or "unmatched"

    rules = {(e.method, e.path): AccessRule(e.access, e.counted) for e in endpoints if "{" not in e.path}
    return Starlette(
        routes=routes,
        middleware=[
            Middleware(RequestContext, metrics=metrics, route_of=route_of),
            Middleware(UiDoor, ui=build_ui(runtime)),  # /ui: the jobs page, signed in with a cookie
            Middleware(
                Access,
                keys=runtime.keys,
                host_check=HostCheck(runtime.settings),
                limiter=runtime.limiter,
                rules=rules,
                max_body=runtime.settings.max_request_bytes,
                max_json_depth=runtime.settings.max_json_depth,
            ),
            Middleware(SessionQuota, limiter=runtime.limiter, idle_s=runtime.settings.session_idle_seconds),
        ],
        exception_handlers={HTTPException: _http_exception},
        lifespan=lifespan,
    )


def _all_endpoints(runtime: Runtime, metrics: Metrics) -> tuple[Endpoint, ...]:
    async def serve_metrics(request: Request, runtime: Runtime, principal: Principal | None) -> Response:
        text = await metrics.render(runtime.engine.store)
        return PlainTextResponse(text, media_type="text/plain; version=0.0.4; charset=utf-8")

    return (
        *ENDPOINTS,
        Endpoint(
            "GET",
            "/jobs/{job_id}/stream",
            stream_job,
            "Follow a job as Server-Sent Events",
            responses={200: JobEvent},
            errors=(401, 404, 429),
        ),
        Endpoint(
            "GET",
            "/metrics",
            serve_metrics,
            "Prometheus metrics",
            access="public" if runtime.settings.metrics_public else "admin",
            responses={200: "text/plain"},
            errors=(401, 403),
        ),
    )


def _bind(methods: dict[str, Endpoint], runtime: Runtime):  # type: ignore[no-untyped-def]
    async def handle(request: Request) -> Response:
        endpoint = methods["GET" if request.method == "HEAD" else request.method]
        principal = request.scope.get("state", {}).get("principal")
        try:
            return await endpoint.handler(request, runtime, principal)
        except ConveyorError as exc:
            return error_response(exc, request_id_of(request))

    handle.__name__ = "_".join(e.handler.__name__ for e in methods.values())
    return handle


async def _http_exception(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    error: ConveyorError = MethodNotAllowed() if exc.status_code == 405 else RouteNotFound()
    if exc.status_code not in (404, 405):
        error = ConveyorError(exc.detail)
        error.http_status = exc.status_code
    response = error_response(error, request_id_of(request))
    response.headers.update(exc.headers or {})  # a 405's Allow (RFC 9110)
    return response


async def ensure_admin_key(runtime: Runtime) -> None:
    """Like Jupyter's token: a server with no key at all makes one admin key and shows it once."""
    if await runtime.keys.any_active():
        return
    key, secret = await runtime.keys.create(role="admin", plan="enterprise", name="created at first start")
    print(
        f"\nConveyor: no API key existed, so an admin key was created ({key.key_id}). It is shown only once:\n\n"
        f"    {secret}\n\nUse it as 'Authorization: Bearer <key>'; make more with 'conveyor keys create'.\n",
        file=sys.stderr,
        flush=True,
    )


class _Server(uvicorn.Server):
    """uvicorn, except that a SIGINT or SIGTERM ends ``serve`` without being raised again after
    the graceful shutdown: the runtime still closes in order (running jobs drain, the store
    closes) and the process exits 0, instead of dying by the re-raised signal first. Each signal
    is also a stop request to the runtime: the second one hurries its drain."""

    def __init__(self, config: uvicorn.Config, shutdown: Shutdown) -> None:
        super().__init__(config)
        self.stop_requests = shutdown

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        self.stop_requests.request()
        super().handle_exit(sig, frame)

    @contextmanager
    def capture_signals(self) -> Iterator[None]:
        if threading.current_thread() is not threading.main_thread():
            yield  # signals reach only the main thread
            return
        handled = (signal.SIGINT, signal.SIGTERM)
        original = {sig: signal.signal(sig, self.handle_exit) for sig in handled}
        try:
            yield
        finally:
            for sig, handler in original.items():
                signal.signal(sig, handler)


def listen(host: str, port: int, backlog: int = 2048) -> socket.socket:
    # IPPROTO_TCP said outright: asyncio sets TCP_NODELAY only on sockets that do, and without
    # it every response on a kept-alive connection waits ~40 ms for a delayed ACK.
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(backlog)
    except OSError as exc:
        sock.close()
        raise ConfigError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    return sock


async def serve_http(settings: Settings) -> None:
    # Listen first: a taken port fails before anything is opened, and clients may connect as
    # soon as the line below is logged (they wait in the backlog until startup ends).
    sock = listen(settings.host, settings.port)
    shutdown = Shutdown()
    try:
        # worker "auto" is "inline" over HTTP: a server process is long-lived.
        async with open_runtime(settings, run_workers=settings.worker != "off", shutdown=shutdown) as runtime:
            await ensure_admin_key(runtime)
            config = uvicorn.Config(
                build_app(runtime),
                log_config=None,
                access_log=False,
                lifespan="on",
                timeout_graceful_shutdown=5,
            )
            server = _Server(config, shutdown)
            freeze_startup_objects()
            port = sock.getsockname()[1]  # the one the system chose, for --port 0
            logger.info(
                "serving HTTP", extra={"action": "http.listening", "host": settings.host, "port": port}
            )
            await server.serve(sockets=[sock])
    finally:
        sock.close()
