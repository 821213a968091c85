"""Who may use the page's data, and the headers every /ui response carries.

``SessionAccess`` is the REST API's ``Access`` middleware with the session cookie in place of the
Bearer header: the same roles, the same rate limits, the same ``X-RateLimit-*`` headers and coded
errors. It guards only the page's data (``/ui/api/``, ``/ui/events``); the pages themselves hold
no data and send a browser that is not signed in to the sign-in page.
"""

from __future__ import annotations

from typing import Any

from starlette.datastructures import Headers, MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from conveyor.auth import Principal
from conveyor.http_api.middleware import Access
from conveyor.http_api.ui.sessions import SAFE_METHODS, Sessions, check_same_origin

DATA_PATHS = ("/ui/api/", "/ui/events")

# Only this server's own files: no inline script or style, no other site, no framing.
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cross-Origin-Opener-Policy": "same-origin",
}


def is_data_path(path: str) -> bool:
    return path.startswith(DATA_PATHS)


class SessionAccess(Access):
    def __init__(self, app: ASGIApp, *, sessions: Sessions, **kwargs: Any) -> None:
        super().__init__(app, **kwargs)
        self.sessions = sessions

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and not is_data_path(scope["path"]):
            await self.app(scope, receive, send)  # a page, a static file, or the sign-in door
            return
        await super().__call__(scope, receive, send)

    async def _authenticate(self, scope: Scope) -> Principal:
        headers = Headers(scope=scope)
        if scope["method"] not in SAFE_METHODS:
            check_same_origin(headers)
        principal = await self.sessions.principal(headers)
        scope["state"]["principal"] = principal
        return principal


class SecurityHeaders:
    """Adds ``SECURITY_HEADERS`` to every response; pages and data are never stored, and the
    static files are checked again on each use (their ETag), so an upgrade is seen at once."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        static = scope["path"].startswith("/ui/static/")

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in SECURITY_HEADERS.items():
                    headers[name] = value
                headers["Cache-Control"] = "no-cache" if static else "no-store"
            await send(message)

        await self.app(scope, receive, send_with_headers)
