"""One call of an operation: its request built from the tool's arguments and the run's
credentials, sent under the outbound rules, and its response turned into a result or an error.

2xx: JSON as parsed, text as text (204 or an empty body: null; other media: base64). 4xx: an
``EXECUTION_ERROR`` with the status and the start of the body (retryable for 408 and 429). 5xx,
a timeout, or an API that cannot be reached: a retryable ``UPSTREAM_UNAVAILABLE``. Credentials and
the toolkit's headers are redacted from every result and message.
"""

from __future__ import annotations

import base64
import codecs
import json
import logging
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import anyio
import httpx2

from conveyor import outbound
from conveyor.context import ToolContext
from conveyor.credentials import redact
from conveyor.errors import AddressNotAllowed, ExecutionError, UpstreamUnavailable
from conveyor.openapi_toolkits.auth import Auth, authorize
from conveyor.openapi_toolkits.operations import Operation, Parameter

logger = logging.getLogger("conveyor.openapi")

EXCERPT_CHARS = 300
_RETRYABLE_CLIENT_ERRORS = {408, 429}


@dataclass(frozen=True)
class Api:
    """What every call of one OpenAPI toolkit shares."""

    name: str
    base_url: str
    headers: Mapping[str, str]
    schemes: Mapping[str, Any]  # components.securitySchemes, resolved
    allow_private: bool
    timeout_s: float
    max_body_bytes: int

    def client(self) -> httpx2.AsyncClient:
        return httpx2.AsyncClient(
            timeout=self.timeout_s,
            follow_redirects=False,  # outbound.request follows them, checking each target
            trust_env=False,  # a proxy from the environment would bypass the address check
            # No kept-alive connections: the pool keys them by address, and a TLS connection made
            # for one host name must not carry a request for another that resolved to the same one.
            limits=httpx2.Limits(max_keepalive_connections=0),
        )


async def call(api: Api, operation: Operation, arguments: dict[str, Any], ctx: ToolContext) -> Any:
    """Call ``operation`` with a tool's arguments; its result, or a ConveyorError."""
    auth = authorize(operation.security, api.schemes, ctx.credentials, api.headers, tool=ctx.tool)
    url, headers, content = _request(api, operation, arguments, auth)
    try:
        async with _client(api, ctx.state) as client:
            with anyio.fail_after(api.timeout_s):
                response = await outbound.request(
                    client,
                    operation.method,
                    url,
                    headers=headers,
                    content=content,
                    allow_private=api.allow_private,
                    max_body_bytes=api.max_body_bytes,
                )
    except AddressNotAllowed as exc:
        exc.suggested_fix = (
            f"Use a public address, or set allow_private_addresses in the [[openapi]] table {api.name!r}."
        )
        raise
    except TimeoutError:
        raise UpstreamUnavailable(
            f"{_where(operation)} got no answer within {api.timeout_s:g} s",
            suggested_fix="Try again later, or raise timeout_seconds in its [[openapi]] table.",
        ) from None
    except (httpx2.HTTPError, OSError) as exc:
        reason = redact(f"{type(exc).__name__}: {exc}".rstrip(": "), auth.secrets)
        raise UpstreamUnavailable(
            f"{_where(operation)} could not reach the API: {reason}",
            suggested_fix="Try again later; check base_url if this persists.",
        ) from None
    logger.debug(
        "openapi call",
        extra={
            "action": "openapi.call",
            "tool": ctx.tool,
            "operation": _where(operation),
            "status": response.status,
        },
    )
    return _outcome(response, operation, auth.secrets)


@asynccontextmanager
async def _client(api: Api, state: Any) -> AsyncIterator[httpx2.AsyncClient]:
    """The toolkit's client (its lifespan's), or one for this call where no lifespan was entered
    (``conveyor call``)."""
    if isinstance(state, httpx2.AsyncClient):
        yield state
        return
    async with api.client() as client:
        yield client


def _request(
    api: Api, operation: Operation, arguments: dict[str, Any], auth: Auth
) -> tuple[httpx2.URL, dict[str, str], bytes | None]:
    path = operation.path
    query: list[tuple[str, str]] = []
    headers = _merged(dict(api.headers), {"Accept": "application/json, text/plain;q=0.9, */*;q=0.5"})
    cookies = dict(auth.cookies)
    for parameter in operation.parameters:
        if parameter.argument not in arguments:
            continue
        value = arguments[parameter.argument]
        if parameter.location == "path":
            path = path.replace(f"{{{parameter.name}}}", quote(_text(value, parameter), safe=""))
        elif parameter.location == "query":
            query.extend(_query_pairs(parameter, value))
        elif parameter.location == "header":
            headers = _merged(headers, {parameter.name: _text(value, parameter)})
        else:
            cookies.setdefault(parameter.name, _text(value, parameter))
    content = None
    if operation.body is not None and operation.body.argument in arguments:
        body = arguments[operation.body.argument]
        content = (json.dumps(body) if operation.body.kind == "json" else str(body)).encode()
        headers = _merged(headers, {"Content-Type": operation.body.media_type})
    headers = _merged(headers, auth.headers)
    if cookies:
        headers = _merged(headers, {"Cookie": "; ".join(f"{k}={v}" for k, v in cookies.items())})
    url = httpx2.URL(api.base_url + path).copy_merge_params([*query, *auth.query])
    return url, headers, content


def _merged(headers: dict[str, str], more: Mapping[str, str]) -> dict[str, str]:
    """``headers`` with ``more`` set, replacing those of the same name in any case."""
    lowered = {name.lower() for name in more}
    return {**{k: v for k, v in headers.items() if k.lower() not in lowered}, **more}


def _text(value: Any, parameter: Parameter) -> str:
    """A parameter value as the simple style writes it (JSON text for a ``content`` parameter)."""
    if parameter.as_json:
        return json.dumps(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return ""
    if isinstance(value, list):
        return ",".join(_text(item, parameter) for item in value)
    if isinstance(value, dict):
        pairs = [(k, _text(v, parameter)) for k, v in value.items()]
        return ",".join(f"{k}={v}" if parameter.explode else f"{k},{v}" for k, v in pairs)
    return str(value)


def _query_pairs(parameter: Parameter, value: Any) -> list[tuple[str, str]]:
    """The form style: an array repeats the name when exploded; an exploded object is its pairs."""
    if parameter.as_json or not parameter.explode:
        return [(parameter.name, _text(value, parameter))]
    if isinstance(value, list):
        return [(parameter.name, _text(item, parameter)) for item in value]
    if isinstance(value, dict):
        return [(str(k), _text(v, parameter)) for k, v in value.items()]
    return [(parameter.name, _text(value, parameter))]


def _outcome(response: outbound.Response, operation: Operation, secrets: list[str]) -> Any:
    status = response.status
    if 200 <= status < 300:
        return redact(_result(response, operation), secrets)
    excerpt = _excerpt(response.body, secrets)
    details: dict[str, Any] = {"status": status, "operation": operation.key, "body": excerpt}
    message = f"{_where(operation)} answered HTTP {status}" + (f": {excerpt}" if excerpt else "")
    if status >= 500:
        raise UpstreamUnavailable(
            message, details=details, suggested_fix="Try again later: the API failed on its side."
        )
    error = ExecutionError(message, details=details)
    if status in _RETRYABLE_CLIENT_ERRORS:
        error.retryable = True
        retry_after = response.headers.get("retry-after")
        if retry_after:
            details["retry_after"] = retry_after
    raise error


def _result(response: outbound.Response, operation: Operation) -> Any:
    if response.status == 204 or not response.body:
        return None
    media = response.headers.get("content-type", "").split(";")[0].strip().lower()
    if media == "application/json" or media.endswith("+json"):
        try:
            return json.loads(response.body)
        except ValueError:
            raise ExecutionError(f"{_where(operation)} answered JSON that does not parse") from None
    if not media or media.startswith("text/") or media.endswith(("+xml", "/xml")):
        return response.body.decode(_charset(response), errors="replace")
    return {"content_type": media, "base64": base64.b64encode(response.body).decode("ascii")}


def _charset(response: outbound.Response) -> str:
    for part in response.headers.get("content-type", "").split(";")[1:]:
        key, _, value = part.strip().partition("=")
        if key.lower() == "charset":
            try:
                return codecs.lookup(value.strip('"')).name
            except LookupError:
                break
    return "utf-8"


def _excerpt(body: bytes, secrets: list[str]) -> str:
    # Redacted before it is cut short or its spaces squeezed, so no part of a secret shows.
    text = redact(body[: EXCERPT_CHARS * 4 + 8192].decode("utf-8", errors="replace"), secrets)
    text = " ".join(text.split())
    return text if len(text) <= EXCERPT_CHARS else f"{text[:EXCERPT_CHARS]}…"


def _where(operation: Operation) -> str:
    return f"{operation.method} {operation.path}"
