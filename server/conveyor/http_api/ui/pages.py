"""The pages (HTML shells that their scripts fill from ``/ui/api/`` and ``/ui/events``), and
the doors in and out: sign-in, which turns an API key into a session cookie, and sign-out.

Pages are put together once, at start, from the package's templates and nothing else: no
request data is ever written into HTML, so there is nothing to escape on this side. The scripts
write what they fetch with ``textContent``.
"""

from __future__ import annotations

import logging
from pathlib import Path
from string import Template

from pydantic import BaseModel, ConfigDict, Field
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response

from conveyor.auth import Principal
from conveyor.errors import Unauthorized
from conveyor.http_api.endpoints import Handler, read_body
from conveyor.http_api.responses import JSONResponse
from conveyor.http_api.ui.sessions import Sessions, check_same_origin, clear_cookie, set_cookie
from conveyor.runtime import Runtime

logger = logging.getLogger("conveyor.http")
TEMPLATES = Path(__file__).parent / "templates"
SIGN_IN_PATH = "/ui/login"

# page name: (title, script); the body is templates/<name>.html
PAGES = {
    "jobs": ("Jobs", "jobs.js"),
    "job": ("Job", "job.js"),
    "tools": ("Tools", "tools.js"),
    "tool": ("Tool", "tool.js"),
    "login": ("Sign in", "login.js"),
}


class SignIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    key: str = Field(
        min_length=1, max_length=512, description="An API key, as 'conveyor keys create' printed it."
    )


def render_pages() -> dict[str, bytes]:
    layout = Template((TEMPLATES / "layout.html").read_text(encoding="utf-8"))
    header = (TEMPLATES / "header.html").read_text(encoding="utf-8")
    return {
        name: layout.substitute(
            title=title,
            script=script,
            page=name,
            header="" if name == "login" else header,
            body=(TEMPLATES / f"{name}.html").read_text(encoding="utf-8"),
        ).encode()
        for name, (title, script) in PAGES.items()
    }


class Pages:
    def __init__(self, sessions: Sessions) -> None:
        self.sessions = sessions
        self.html = render_pages()

    def page(self, name: str) -> Handler:
        async def serve(request: Request, runtime: Runtime, principal: Principal | None) -> Response:
            # The page is a shell, but a browser that is not signed in belongs at the door.
            if await self._signed_in(request) is None:
                return RedirectResponse(SIGN_IN_PATH, status_code=303)
            return HTMLResponse(self.html[name])

        serve.__name__ = f"ui_{name}_page"
        return serve

    async def sign_in_page(self, request: Request, runtime: Runtime, principal: Principal | None) -> Response:
        if await self._signed_in(request) is not None:
            return RedirectResponse("/ui", status_code=303)
        return HTMLResponse(self.html["login"])

    async def sign_in(self, request: Request, runtime: Runtime, principal: Principal | None) -> Response:
        check_same_origin(request.headers)  # no other site signs a browser in (login CSRF)
        body = await read_body(request, SignIn, runtime.settings)
        who, sealed = await self.sessions.sign_in(body.key)
        logger.info("signed in to the jobs page", extra={"action": "ui.signed_in", "key_id": who.id})
        response = JSONResponse({"key_id": who.id, "role": who.role})
        set_cookie(response, sealed, secure=request.url.scheme == "https")
        return response

    async def sign_out(self, request: Request, runtime: Runtime, principal: Principal | None) -> Response:
        check_same_origin(request.headers)
        response = JSONResponse({"signed_out": True})
        clear_cookie(response, secure=request.url.scheme == "https")
        return response

    async def _signed_in(self, request: Request) -> Principal | None:
        try:
            return await self.sessions.principal(request.headers)
        except Unauthorized:
            return None
