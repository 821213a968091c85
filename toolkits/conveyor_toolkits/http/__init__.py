"""The ``http`` toolkit: one HTTP request, under the outbound rules, as a job or directly.

Off unless loaded (``conveyor_toolkits.http:toolkit``). Requests go out as webhooks and OpenAPI
tools do: no loopback, private or link-local address after DNS resolution unless
``[toolkit_settings.http]`` allows it, the checked address pinned for the connection, every
redirect checked again (and its host against the allow and deny lists), auth headers dropped on a
redirect to another origin, the response capped. Any status is a result (``ok`` says 2xx);
what cannot be reached is a retryable ``UPSTREAM_UNAVAILABLE``. Secrets come from the run's
credentials by name (``{credential:NAME}``) and are redacted from whatever comes back.
"""

from __future__ import annotations

import logging
import time
from typing import Annotated, Any, Literal

import anyio
import httpx2
from pydantic import BaseModel, Field

from conveyor import ToolContext, Toolkit, strict_json
from conveyor.credentials import redact
from conveyor.errors import AddressNotAllowed, InvalidArguments, UpstreamUnavailable
from conveyor.outbound import HostRules, check_url
from conveyor.outbound import request as send
from conveyor_toolkits.http.credentials import fill
from conveyor_toolkits.http.responses import BodyKind, decode
from conveyor_toolkits.http.settings import HttpSettings
from conveyor_toolkits.timeouts import bounded_timeout

__all__ = ["HttpResult", "HttpSettings", "toolkit"]

Method = Literal["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]
# Set by Conveyor: the Host pins the checked address; the others describe the body it sends.
RESERVED_HEADERS = {"host", "content-length", "transfer-encoding", "connection"}
USER_AGENT = "conveyor-http/1.0"

toolkit = Toolkit(
    "http",
    description="Make HTTP requests to APIs (slow ones as jobs), under the server's outbound rules.",
    version="1.0.0",
    settings=HttpSettings,
)


class HttpResult(BaseModel):
    status: int = Field(description="the HTTP status code")
    ok: bool = Field(description="whether the status was 2xx")
    url: str = Field(description="the URL that answered, after redirects")
    headers: dict[str, str] = Field(description="the response headers")
    body_kind: BodyKind = Field(description="json: body is the parsed JSON; text; base64: bytes; empty")
    body: Any = Field(description="the response body, as body_kind says")
    elapsed_ms: int


@toolkit.tool(title="HTTP request", destructive=True, open_world=True)
async def request(
    ctx: ToolContext,
    url: Annotated[str, Field(min_length=1, max_length=2000, description="An absolute http(s) URL.")],
    method: Annotated[Method, Field(description="The HTTP method.")] = "GET",
    headers: Annotated[
        dict[str, str] | None,
        Field(description="Request headers. Put secrets in as {credential:NAME}, given in credentials."),
    ] = None,
    params: Annotated[
        dict[str, str | int | float | bool] | None,
        Field(description="Query parameters, added to the URL's ({credential:NAME} works here too)."),
    ] = None,
    json_body: Annotated[
        Any, Field(alias="json", description="A JSON body (sent as application/json).")
    ] = None,
    body: Annotated[str | None, Field(description="A text body, instead of json.")] = None,
    timeout_s: Annotated[
        float | None,
        Field(gt=0, le=86_400, description="Give up after this many seconds (within the server's maximum)."),
    ] = None,
) -> HttpResult:
    """Send one HTTP request and return the response: status, headers and body (parsed JSON, text,
    or base64). Any status is a result (ok: false for non-2xx). Pass secrets as credentials and
    name them in headers as {credential:NAME}: they are never stored or shown."""
    settings = ctx.settings if isinstance(ctx.settings, HttpSettings) else HttpSettings()
    timeout = bounded_timeout(timeout_s, default_s=settings.default_timeout_s, max_s=settings.max_timeout_s)
    check_url(url, argument="url", allow_private=True)  # its shape; the addresses when sending
    sent_headers, secrets = _headers(headers or {}, ctx)
    target, more_secrets = _url(url, params or {}, ctx)
    secrets += more_secrets
    content = _content(json_body, body, sent_headers)
    started = time.monotonic()
    try:
        async with _client(timeout) as client:
            with anyio.fail_after(timeout):
                response = await send(
                    client,
                    method,
                    target,
                    headers=sent_headers,
                    content=content,
                    allow_private=settings.allow_private_addresses,
                    allowed_networks=settings.allowed_networks,
                    hosts=HostRules(settings.allowed_hosts, settings.denied_hosts),
                    max_body_bytes=settings.max_response_bytes,
                    max_redirects=settings.max_redirects,
                )
    except AddressNotAllowed as exc:
        exc.suggested_fix = (
            "Use a public address, or ask the operator to allow this one in [toolkit_settings.http] "
            "(allowed_networks, allowed_hosts)."
        )
        raise
    except TimeoutError:
        raise UpstreamUnavailable(
            f"{target.host} gave no answer within {timeout:g} s",
            suggested_fix="Try again later, or give a larger timeout_s.",
        ) from None
    except (httpx2.HTTPError, OSError) as exc:
        reason = redact(f"{type(exc).__name__}: {exc}".rstrip(": "), secrets)
        raise UpstreamUnavailable(f"{target.host} could not be reached: {reason}") from None
    ctx.log("http request", level=logging.DEBUG, method=method, host=target.host, status=response.status)
    kind, value = decode(response.body, response.headers.get("content-type", ""))
    return HttpResult(
        status=response.status,
        ok=200 <= response.status < 300,
        url=redact(str(response.url), secrets),
        headers=redact(dict(response.headers.items()), secrets),
        body_kind=kind,
        body=redact(value, secrets),
        elapsed_ms=int((time.monotonic() - started) * 1000),
    )


def _headers(headers: dict[str, str], ctx: ToolContext) -> tuple[dict[str, str], list[str]]:
    sent = {"User-Agent": USER_AGENT}
    secrets: list[str] = []
    for name, template in headers.items():
        if name.lower() in RESERVED_HEADERS:
            raise InvalidArguments(f"headers may not set {name}: Conveyor sets it", argument="headers")
        value, used = fill(template, ctx.credentials, argument="headers")
        if not _valid_header(name, value):
            raise InvalidArguments(f"header {name!r} is not a valid HTTP header", argument="headers")
        sent = {k: v for k, v in sent.items() if k.lower() != name.lower()}
        sent[name] = value
        secrets += used
    return sent, secrets


def _valid_header(name: str, value: str) -> bool:
    token = name and all(33 <= ord(ch) < 127 and ch not in '"(),/:;<=>?@[\\]{}' for ch in name)
    return bool(token) and not any(ch in value for ch in "\r\n\0")


def _url(
    url: str, params: dict[str, str | int | float | bool], ctx: ToolContext
) -> tuple[httpx2.URL, list[str]]:
    secrets: list[str] = []
    query: dict[str, str] = {}
    for name, raw in params.items():
        text = ("true" if raw else "false") if isinstance(raw, bool) else str(raw)
        query[name], used = fill(text, ctx.credentials, argument="params")
        secrets += used
    return httpx2.URL(url).copy_merge_params(query), secrets


def _content(json_body: Any, body: str | None, headers: dict[str, str]) -> bytes | None:
    if json_body is not None and body is not None:
        raise InvalidArguments("give json or body, not both", argument="body")
    has_type = any(name.lower() == "content-type" for name in headers)
    if json_body is not None:
        if not has_type:
            headers["Content-Type"] = "application/json"
        return strict_json.dumps(json_body).encode()
    if body is not None:
        if not has_type:
            headers["Content-Type"] = "text/plain; charset=utf-8"
        return body.encode()
    return None


def _client(timeout: float) -> httpx2.AsyncClient:
    return httpx2.AsyncClient(
        timeout=timeout,
        follow_redirects=False,  # outbound.request follows them, checking each target
        trust_env=False,  # a proxy from the environment would bypass the address check
        # No kept-alive connections: the pool keys them by address, and a TLS connection made for
        # one host name must not carry a request for another that resolved to the same one.
        limits=httpx2.Limits(max_keepalive_connections=0),
    )
