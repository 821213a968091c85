"""A plain 2026-07-28 ``tools/call`` over HTTP, answered by Conveyor rather than the SDK's kernel.

The SDK's 2026 entry takes every request through its checks, a new connection, its middleware
chain and pydantic models of the message, the params and the result: about 540 µs of server CPU
for a no-op call, twice what the call itself costs Conveyor (bench/FINDINGS.md). The request
agents send most, a direct tool call, is answered here instead, and only in its ordinary form:

- ``recognize`` accepts a request only when the SDK's entry would accept it and run it as a
  direct call, by the SDK's own checks (the envelope and its headers, ``Mcp-Param-*`` headers
  against the tool's schema, the params against the version's schema). Anything else (a
  rejection, a task, a tasks-extension caller, an unknown tool, a field it does not know) is
  left to the SDK, which answers it, errors included, in its own words and status.
- ``answer`` runs the call through ``ToolCalls``, as the SDK's handler does, and writes the reply
  as the SDK's entry would: the result through the version's schema, ``resultType`` and the
  server's identity stamped on it, errors through the SDK's code-to-status table, and an
  OpenTelemetry span named and tagged as the SDK's middleware names and tags one.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from mcp.server.runner import modern_error_data
from mcp.shared.exceptions import MCPError
from mcp.shared.inbound import (
    ERROR_CODE_HTTP_STATUS,
    MCP_PARAM_HEADER_PREFIX,
    InboundModernRoute,
    classify_inbound_request,
    find_duplicated_routing_header,
    validate_mcp_param_headers,
)
from mcp_types import INTERNAL_ERROR, INVALID_PARAMS, SERVER_INFO_META_KEY
from mcp_types import methods as wire_methods
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.propagate import extract
from pydantic import ValidationError
from starlette.datastructures import Headers
from starlette.types import Scope, Send

from conveyor.auth import Principal
from conveyor.mcp_server.meta_tools import META_TOOLS
from conveyor.mcp_server.server import ToolCalls, coding_errors
from conveyor.mcp_server.tasks import TASKS_EXTENSION
from conveyor.registry import Registry

logger = logging.getLogger("conveyor.mcp")
_tracer = trace.get_tracer("conveyor")

METHOD = "tools/call"
_ENVELOPE_KEYS = frozenset({"jsonrpc", "id", "method", "params"})
_PLAIN_PARAMS = frozenset({"name", "arguments", "_meta"})  # no task, no input responses
_PARAM_HEADER_PREFIX = MCP_PARAM_HEADER_PREFIX.lower().encode("latin-1")  # ASGI names are lower case
_JSON_HEADERS = (b"content-type", b"application/json")


@dataclass(frozen=True, slots=True)
class PlainToolCall:
    request_id: str | int
    name: str
    arguments: dict[str, Any] | None
    meta: Mapping[str, Any]
    protocol_version: str


def recognize(
    scope: Scope, message: Any, registry: Registry, input_schema: Callable[[str], Any]
) -> PlainToolCall | None:
    """The call, if this POST (whose body the access layer has parsed) is a tools/call the SDK's
    2026 entry would run as a direct call; None leaves it to the SDK."""
    if not isinstance(message, dict) or message.keys() - _ENVELOPE_KEYS or message.get("method") != METHOD:
        return None
    request_id, params = message.get("id"), message.get("params")
    if message.get("jsonrpc") != "2.0" or not isinstance(params, dict):
        return None
    if isinstance(request_id, bool) or not isinstance(request_id, str | int):
        return None
    name, arguments = params.get("name"), params.get("arguments")
    if params.keys() - _PLAIN_PARAMS or not isinstance(name, str) or not isinstance(arguments, dict | None):
        return None
    if name not in META_TOOLS and (name not in registry or registry.get(name).task_support == "required"):
        return None  # unknown (the SDK's -32602), or a task only the tasks middleware can make
    raw_headers = scope["headers"]
    headers = [(key.decode("latin-1"), value.decode("latin-1")) for key, value in raw_headers]
    if find_duplicated_routing_header(headers) is not None:
        return None
    first_of_each = dict(reversed(headers))  # as the SDK folds them: the first of a name wins
    if not accepts(first_of_each.get("accept", ""), JSON):
        return None
    route = classify_inbound_request(message, headers=first_of_each)
    if not isinstance(route, InboundModernRoute) or _declares_tasks(route.client_capabilities):
        return None
    try:
        wire_methods.validate_client_request(METHOD, route.protocol_version, params)
    except (ValidationError, KeyError):
        return None
    if _param_headers_refused(raw_headers, name, arguments or {}, input_schema):
        return None
    return PlainToolCall(request_id, name, arguments, params.get("_meta") or {}, route.protocol_version)


JSON = ("*/*", "application/*", "application/json")  # what takes JSON in Accept, wildcards included
EVENT_STREAM = ("*/*", "text/*", "text/event-stream")


def accepts(accept: str, *kinds: tuple[str, ...]) -> bool:
    """Whether Accept takes every one of ``kinds``, read as the SDK reads it (``check_accept_headers``)."""
    accepted = {media_type.split(";")[0].strip().lower() for media_type in accept.split(",")}
    return all(not accepted.isdisjoint(kind) for kind in kinds)


def _declares_tasks(capabilities: Any) -> bool:
    """A caller of the tasks extension may be answered with a task: the tasks middleware decides."""
    extensions = capabilities.get("extensions") if isinstance(capabilities, dict) else None
    return isinstance(extensions, dict) and TASKS_EXTENSION in extensions


def _param_headers_refused(
    raw_headers: list[tuple[bytes, bytes]],
    name: str,
    arguments: dict[str, Any],
    input_schema: Callable[[str], Any],
) -> bool:
    """Whether ``Mcp-Param-*`` headers disagree with the arguments, as the SDK checks them."""
    if not arguments and not any(key.startswith(_PARAM_HEADER_PREFIX) for key, _ in raw_headers):
        return False  # nothing declared can be violated
    try:
        schema = input_schema(name)
    except Exception:
        return True  # the SDK skips the check and logs why: let it
    if schema is None:
        return False
    return validate_mcp_param_headers(schema, arguments, Headers(raw=raw_headers)) is not None


async def answer(
    call: PlainToolCall, principal: Principal, calls: ToolCalls, server_info: dict[str, Any], send: Send
) -> None:
    """Run the call and send its JSON-RPC reply (a direct call reports no progress: it asked none)."""
    request_id = str(call.request_id)
    reply: dict[str, Any] = {"jsonrpc": "2.0", "id": call.request_id}
    status = 200
    try:
        with _span(call) as span, coding_errors(request_id):
            result = await calls.call(principal, call.name, call.arguments, call.meta, request_id, None)
            if result.is_error and span is not None:
                span.set_attribute("error.type", "tool_error")
                span.set_status(trace.StatusCode.ERROR)
        dumped = result.model_dump(by_alias=True, mode="json", exclude_none=True)
        reply["result"] = _wire_result(dumped, call, server_info)
    except Exception as exc:
        error = modern_error_data(exc)
        reply["error"] = error.model_dump(by_alias=True, mode="json", exclude_none=True)
        status = ERROR_CODE_HTTP_STATUS.get(error.code, 200)
    body = json.dumps(reply, separators=(",", ":")).encode()
    headers = [(b"content-length", str(len(body)).encode("ascii")), _JSON_HEADERS]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def _wire_result(dumped: dict[str, Any], call: PlainToolCall, server_info: dict[str, Any]) -> dict[str, Any]:
    """The result as the SDK's kernel shapes it for a 2026 caller."""
    try:
        dumped = wire_methods.serialize_server_result(METHOD, call.protocol_version, dumped)
    except ValidationError:
        logger.exception("tools/call returned an invalid result")
        raise MCPError(code=INTERNAL_ERROR, message="Handler returned an invalid result") from None
    dumped.setdefault("resultType", "complete")
    meta = dumped.get("_meta")
    if meta is None:
        dumped["_meta"] = {SERVER_INFO_META_KEY: server_info}
    elif isinstance(meta, dict) and meta.get(SERVER_INFO_META_KEY) is None:
        dumped["_meta"] = {**meta, SERVER_INFO_META_KEY: server_info}
    return dumped


@contextmanager
def _span(call: PlainToolCall) -> Iterator[trace.Span | None]:
    """The server span the SDK's OpenTelemetry middleware makes for a tools/call, in its terms.

    None where nothing could see it: no tracer provider is set (so the span would record
    nothing) and the caller sent no trace to carry on. That costs about 20 µs a call.
    """
    parent = _parent(call.meta)
    if parent is None and isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider):
        yield None
        return
    attributes = {
        "mcp.method.name": METHOD,
        "mcp.protocol.version": call.protocol_version,
        "jsonrpc.request.id": str(call.request_id),
        "gen_ai.operation.name": "execute_tool",
        "gen_ai.tool.name": call.name,
    }
    with _tracer.start_as_current_span(
        f"{METHOD} {call.name}",
        kind=trace.SpanKind.SERVER,
        attributes=attributes,
        context=parent,
        record_exception=False,
        set_status_on_exception=False,
    ) as span:
        try:
            yield span
        except (MCPError, ValidationError) as exc:
            code = str(exc.error.code if isinstance(exc, MCPError) else INVALID_PARAMS)
            span.set_attributes({"error.type": code, "rpc.response.status_code": code})
            span.set_status(trace.StatusCode.ERROR)
            raise
        except Exception as exc:
            span.set_attribute("error.type", type(exc).__qualname__)
            span.record_exception(exc)
            span.set_status(trace.StatusCode.ERROR, str(exc))
            raise


def _parent(meta: Mapping[str, Any]) -> Context | None:
    """The caller's trace, where ``_meta`` carries a valid one (else the span has none)."""
    if "traceparent" not in meta:
        return None
    try:
        context = extract(meta)
    except (ValueError, TypeError):
        return None
    return context if trace.get_current_span(context).get_span_context().is_valid else None
