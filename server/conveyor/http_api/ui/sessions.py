"""Signed-in browsers: the session cookie, and the same-origin check that guards what it allows.

The cookie holds the API key sealed (Fernet: encrypted and authenticated) under a server key
kept in the database, so every server process on that database reads every session, and nothing
in the browser, a URL or a log shows the key. Each request opens the cookie and checks the key
exactly as the Bearer middleware does (``ApiKeys.authenticate``, with its cache), so revoking the
key ends its sessions at the next request. The cookie is HttpOnly (no script reads it),
SameSite=Strict (no other site's request carries it) and a session cookie (it ends with the
browser); a sealed key also expires after ``SESSION_SECONDS`` whatever the browser does.
"""

from __future__ import annotations

from urllib.parse import urlsplit

import anyio
from cryptography.fernet import Fernet, InvalidToken
from starlette.datastructures import Headers
from starlette.requests import cookie_parser
from starlette.responses import Response

from conveyor.auth import ApiKeys, Principal
from conveyor.errors import Forbidden, Unauthorized
from conveyor.webhooks import WebhookStore

COOKIE = "conveyor_session"
SESSION_SECONDS = 12 * 3600
SECRET_NAME = "ui_session_key"  # in the database's server_secrets, beside the webhook secret
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
SIGN_IN_FIX = "Sign in again at /ui/login with an API key."


class Sessions:
    def __init__(self, keys: ApiKeys, secrets: WebhookStore) -> None:
        self.keys = keys
        self._secrets = secrets
        self._fernet: Fernet | None = None
        self._loading = anyio.Lock()

    async def sign_in(self, api_key: str) -> tuple[Principal, str]:
        """The key's principal and the cookie value that stands for it; ``UNAUTHORIZED`` if the key is not valid."""
        principal = await self.keys.authenticate(api_key)
        sealed = (await self._key()).encrypt(api_key.encode()).decode("ascii")
        return principal, sealed.rstrip("=")  # padding would make the cookie value a quoted string

    async def principal(self, headers: Headers) -> Principal:
        """Who the request's session cookie stands for, checked as a Bearer key is."""
        sealed = cookie_parser(headers.get("cookie", "")).get(COOKIE)
        if not sealed:
            raise Unauthorized("Not signed in", suggested_fix=SIGN_IN_FIX)
        try:
            padded = sealed + "=" * (-len(sealed) % 4)
            api_key = (await self._key()).decrypt(padded.encode("ascii"), ttl=SESSION_SECONDS).decode()
        except (InvalidToken, UnicodeError):
            raise Unauthorized("The session has expired or is not valid", suggested_fix=SIGN_IN_FIX) from None
        return await self.keys.authenticate(api_key)

    async def _key(self) -> Fernet:
        if self._fernet is None:
            async with self._loading:
                if self._fernet is None:
                    key = await self._secrets.server_secret(SECRET_NAME, Fernet.generate_key().decode())
                    self._fernet = Fernet(key.encode())
        return self._fernet


def set_cookie(response: Response, value: str, *, secure: bool) -> None:
    # No max_age: a session cookie, gone when the browser closes.
    response.set_cookie(COOKIE, value, path="/", httponly=True, samesite="strict", secure=secure)


def clear_cookie(response: Response, *, secure: bool) -> None:
    response.delete_cookie(COOKIE, path="/", httponly=True, samesite="strict", secure=secure)


def check_same_origin(headers: Headers) -> None:
    """Refuse a state-changing request that another site's page sent (CSRF), on top of SameSite.

    A browser says where a request comes from in headers no page can set: ``Sec-Fetch-Site``
    (current browsers) and ``Origin`` (every POST and DELETE). Either must say this server: the
    first ``same-origin``, the second the host and port the request was sent to (only those: a TLS
    proxy changes the scheme; a proxy that rewrites Host is covered by the first).
    """
    if headers.get("sec-fetch-site") == "same-origin":
        return
    origin = headers.get("origin")
    if origin and origin != "null" and urlsplit(origin).netloc.lower() == headers.get("host", "").lower():
        return
    raise Forbidden(
        "Cross-site request refused: the page must be served by this Conveyor",
        suggested_fix="Use the page at /ui of this server; other sites cannot act with its session.",
    )
