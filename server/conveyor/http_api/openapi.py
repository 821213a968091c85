"""OpenAPI 3.1, generated from the endpoint declarations and the pydantic models they validate with."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import JsonSchemaMode, models_json_schema

from conveyor.http_api.endpoints import Endpoint
from conveyor.http_api.models import ErrorBody

REF = "#/components/schemas/{model}"
STATUS_TEXT = {
    200: "OK",
    201: "Created",
    202: "Accepted",
    400: "Invalid request",
    401: "Missing or invalid API key",
    403: "This key may not do that",
    404: "Not found",
    409: "Idempotency key reused differently",
    413: "Payload too large",
    429: "Rate limit exceeded",
    500: "Tool execution failed",
    503: "The job store is busy (another process holds it); nothing was done: retry after Retry-After",
    504: "Tool timed out",
}
HEADERS: dict[str, dict[str, Any]] = {
    "X-Request-Id": {
        "description": "This request's id (the client's own X-Request-Id when it sent a valid one); "
        "error bodies repeat it.",
        "required": True,
        "schema": {"type": "string"},
    },
    "X-RateLimit-Limit": {
        "description": "Executions per minute the key's plan allows.",
        "required": True,
        "schema": {"type": "integer", "minimum": 1},
    },
    "X-RateLimit-Remaining": {
        "description": "Executions left in the current one-minute window.",
        "required": True,
        "schema": {"type": "integer", "minimum": 0},
    },
    "X-RateLimit-Reset": {
        "description": "Unix time (seconds) when the current window ends.",
        "required": True,
        "schema": {"type": "integer"},
    },
    "Retry-After": {
        "description": "Seconds to wait before retrying: until the rate limit window resets (429), "
        "or for a busy job store (503).",
        "required": True,
        "schema": {"type": "integer", "minimum": 1},
    },
    "WWW-Authenticate": {
        "description": "The Bearer challenge.",
        "required": True,
        "schema": {"type": "string"},
    },
}
RATE_HEADERS = ("X-RateLimit-Limit", "X-RateLimit-Remaining", "X-RateLimit-Reset")
# Authentication and role checks answer before the key's rate window is looked at.
_UNMETERED = (401, 403)


def build_openapi(endpoints: tuple[Endpoint, ...], *, version: str) -> dict[str, Any]:
    refs, defs = _schemas(endpoints)
    # A response that creates a job links to every operation on /jobs/{job_id}.
    job_links = {
        e.handler.__name__: {
            "operationId": e.handler.__name__,
            "parameters": {"job_id": "$response.body#/job_id"},
        }
        for e in endpoints
        if "{job_id}" in e.path
    }
    paths: dict[str, dict[str, Any]] = {}
    for endpoint in endpoints:
        paths.setdefault(endpoint.path, {})[endpoint.method.lower()] = _operation(endpoint, refs, job_links)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Conveyor Tool Execution & Jobs API",
            "version": version,
            "description": "Run tools now (POST /execute_tool) or as durable background jobs (/jobs). "
            "MCP over streamable HTTP is served at /mcp.",
        },
        "paths": paths,
        "components": {
            "schemas": defs,
            "headers": HEADERS,
            "securitySchemes": {"bearerAuth": {"type": "http", "scheme": "bearer"}},
        },
        "security": [{"bearerAuth": []}],
    }


def _schemas(
    endpoints: tuple[Endpoint, ...],
) -> tuple[dict[tuple[type[BaseModel], str], Any], dict[str, Any]]:
    wanted: set[tuple[type[BaseModel], JsonSchemaMode]] = {(ErrorBody, "serialization")}
    for endpoint in endpoints:
        if endpoint.body is not None:
            wanted.add((endpoint.body, "validation"))
        for answer in (*endpoint.responses.values(), endpoint.error_body):
            if not isinstance(answer, str):
                wanted.add((answer, "serialization"))
    ordered = sorted(wanted, key=lambda pair: (pair[0].__name__, pair[1]))
    refs: Any
    refs, top = models_json_schema(ordered, ref_template=REF)
    return dict(refs), top.get("$defs", {})


def _operation(
    endpoint: Endpoint, refs: dict[tuple[type[BaseModel], str], Any], job_links: dict[str, Any]
) -> dict[str, Any]:
    operation: dict[str, Any] = {
        "operationId": endpoint.handler.__name__,
        "summary": endpoint.summary,
        "parameters": _path_parameters(endpoint) + _query_parameters(endpoint),
        "responses": {},
    }
    if endpoint.access == "public":
        operation["security"] = []
    if endpoint.body is not None:
        operation["requestBody"] = {
            "required": True,
            "content": {"application/json": {"schema": refs[(endpoint.body, "validation")]}},
        }
    for status, answer in endpoint.responses.items():
        if isinstance(answer, str):
            content = {answer: {"schema": {"type": "string"}}}
        else:
            media_type = getattr(answer, "media_type", "application/json")
            content = {media_type: {"schema": refs[(answer, "serialization")]}}
        operation["responses"][str(status)] = _response(endpoint, status, content)
        if not isinstance(answer, str) and "job_id" in answer.model_fields and "{" not in endpoint.path:
            operation["responses"][str(status)]["links"] = job_links
    error = {"application/json": {"schema": refs[(endpoint.error_body, "serialization")]}}
    for status in endpoint.errors:
        operation["responses"][str(status)] = _response(endpoint, status, error)
    return operation


def _response(endpoint: Endpoint, status: int, content: dict[str, Any]) -> dict[str, Any]:
    names = ["X-Request-Id"]
    if endpoint.access != "public" and status not in _UNMETERED:
        names += RATE_HEADERS
    if status in (429, 503) and status in endpoint.errors:
        names.append("Retry-After")
    if status == 401:
        names.append("WWW-Authenticate")
    return {
        "description": STATUS_TEXT.get(status, "OK"),
        "headers": {name: {"$ref": f"#/components/headers/{name}"} for name in names},
        "content": content,
    }


def _path_parameters(endpoint: Endpoint) -> list[dict[str, Any]]:
    names = [part[1:-1] for part in endpoint.path.split("/") if part.startswith("{")]
    return [{"name": name, "in": "path", "required": True, "schema": {"type": "string"}} for name in names]


def _query_parameters(endpoint: Endpoint) -> list[dict[str, Any]]:
    if endpoint.query is None:
        return []
    schema = endpoint.query.model_json_schema()
    required = set(schema.get("required", ()))
    in_path = {part[1:-1] for part in endpoint.path.split("/") if part.startswith("{")}
    parameters = []
    for name, prop in schema.get("properties", {}).items():
        if name in in_path:
            continue  # a path parameter the same model carries
        prop = _query_value(prop, schema.get("$defs", {}))
        description = prop.pop("description", None)
        parameter = {"name": name, "in": "query", "required": name in required, "schema": prop}
        if description:
            parameter["description"] = description
        parameters.append(parameter)
    return parameters


def _query_value(prop: dict[str, Any], defs: dict[str, Any]) -> dict[str, Any]:
    """A query value is a string on the wire: absent, never null; enums are inlined."""
    options = [option for option in prop.get("anyOf", [prop]) if option.get("type") != "null"]
    value = {key: item for key, item in prop.items() if key not in ("anyOf", "title")}
    if len(options) == 1:
        value.update({key: item for key, item in options[0].items() if key != "title"})
    ref = value.pop("$ref", None)
    if ref is not None:  # the field's own description and default win over the enum's
        value = {**{k: v for k, v in defs[ref.rsplit("/", 1)[-1]].items() if k != "title"}, **value}
    if value.get("default", 0) is None:
        del value["default"]
    return value
