"""The jobs page at ``/ui``: what a person opens in a browser to watch and drive jobs.

Plain HTML, CSS and JavaScript modules shipped in this package (``templates/``, ``static/``):
no build step, no framework, nothing fetched from elsewhere. A person signs in with an API key
(``sessions.py``); the page's data then comes from the REST API's own handlers and a live event
stream, under the same ownership, roles and rate limits as the REST API (``access.py``).

``UiDoor`` sits in the main app's middleware, after request ids and before the Bearer ``Access``
middleware, and hands every ``/ui`` request to the app ``build_ui`` makes.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path

from starlette.exceptions import HTTPException
from starlette.middleware.exceptions import ExceptionMiddleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Mount, Route, Router
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Receive, Scope, Send

from conveyor.errors import ConveyorError, MethodNotAllowed, RouteNotFound
from conveyor.http_api.endpoints import Handler
from conveyor.http_api.mcp import HostCheck
from conveyor.http_api.middleware import AccessRule
from conveyor.http_api.responses import error_response, request_id_of
from conveyor.http_api.ui.access import SecurityHeaders, SessionAccess
from conveyor.http_api.ui.api import SUBMIT_PATH, api_handlers
from conveyor.http_api.ui.figures import Figures
from conveyor.http_api.ui.live import events_endpoint
from conveyor.http_api.ui.pages import SIGN_IN_PATH, Pages
from conveyor.http_api.ui.sessions import Sessions
from conveyor.runtime import Runtime

__all__ = ["UI_PATH", "UiDoor", "build_ui"]

UI_PATH = "/ui"
STATIC = Path(__file__).parent / "static"


class UiDoor:
    def __init__(self, app: ASGIApp, *, ui: ASGIApp) -> None:
        self.app = app
        self.ui = ui

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        if scope["type"] == "http" and (path == UI_PATH or path.startswith(UI_PATH + "/")):
            await self.ui(scope, receive, send)
        else:
            await self.app(scope, receive, send)


def build_ui(runtime: Runtime) -> ASGIApp:
    sessions = Sessions(runtime.keys, runtime.webhooks.store)
    figures = Figures(runtime)
    pages = Pages(sessions)
    by_path: dict[str, dict[str, Handler]] = {
        UI_PATH: {"GET": pages.page("jobs")},
        f"{UI_PATH}/jobs/{{job_id}}": {"GET": pages.page("job")},
        f"{UI_PATH}/tools": {"GET": pages.page("tools")},
        f"{UI_PATH}/tools/{{name}}": {"GET": pages.page("tool")},
        SIGN_IN_PATH: {"GET": pages.sign_in_page, "POST": pages.sign_in},
        f"{UI_PATH}/logout": {"POST": pages.sign_out},
        f"{UI_PATH}/events": {"GET": events_endpoint(figures, sessions)},
        **api_handlers(figures),
    }
    # One route per path, so that a 405's Allow lists every method of the path.
    routes: list[BaseRoute] = [
        Route(path, _one_of(methods, runtime), methods=list(methods)) for path, methods in by_path.items()
    ]
    routes.append(Mount(f"{UI_PATH}/static", app=StaticFiles(directory=STATIC)))
    app: ASGIApp = ExceptionMiddleware(Router(routes=routes), handlers={HTTPException: _http_exception})
    app = SessionAccess(
        app,
        sessions=sessions,
        keys=runtime.keys,
        host_check=HostCheck(runtime.settings),
        limiter=runtime.limiter,
        rules={("POST", SUBMIT_PATH): AccessRule("user", counted=True)},  # a job submit, as on REST
        max_body=runtime.settings.max_request_bytes,
        max_json_depth=runtime.settings.max_json_depth,
    )
    return SecurityHeaders(app)


def _one_of(methods: dict[str, Handler], runtime: Runtime) -> Callable[[Request], Awaitable[Response]]:
    """One endpoint for a path's methods, answering a ``ConveyorError`` as its coded error."""

    async def handle(request: Request) -> Response:
        handler = methods["GET" if request.method == "HEAD" else request.method]
        principal = request.scope.get("state", {}).get("principal")
        try:
            return await handler(request, runtime, principal)
        except ConveyorError as exc:
            return error_response(exc, request_id_of(request))

    handle.__name__ = "_".join(h.__name__ for h in methods.values())
    return handle


async def _http_exception(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    error = MethodNotAllowed() if exc.status_code == 405 else RouteNotFound()
    response = error_response(error, request_id_of(request))
    response.headers.update(exc.headers or {})  # a 405's Allow
    return response
